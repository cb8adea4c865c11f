/// The OpenAPI 3.0 description of the API, served at `GET /v1/openapi.json`. Written by hand;
/// keep it in step with ``buildRouter(_:)`` (a test checks that every route is described).
public let openAPIDocument = #"""
{
  "openapi": "3.0.3",
  "info": {
    "title": "DeltaPlan optimizer service",
    "version": "1",
    "description": "Plans Delta-CoMe mixed-precision compression of fine-tuned model deltas. Heavy work (analyses) runs as persisted jobs on a bounded worker pool; shape-only plans from a model profile are answered at once. When the server has a token file, every request but /healthz needs 'Authorization: Bearer <token>'."
  },
  "servers": [{"url": "http://127.0.0.1:8080"}],
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
          "code": {"type": "string", "description": "Stable code: invalid_json, invalid_field, unknown_field, unknown_strategy, malformed_budget, infeasible_budget, invalid_plan_request, unauthorized, not_found, job_finished, analysis_not_ready, plan_not_ready, body_too_large, path_not_allowed, internal_error."},
          "message": {"type": "string", "description": "Names the field, path or job at fault."},
          "details": {"type": "object", "additionalProperties": true, "description": "e.g. field; for infeasible_budget: unit, budgetBits, smallestFeasibleBits, smallestFeasibleBytes."}
        }}}
      },
      "Job": {
        "type": "object",
        "required": ["id", "kind", "state", "parameters", "progress", "createdAt", "startedAt", "finishedAt", "error", "result", "cancelRequested", "attempts"],
        "properties": {
          "id": {"type": "string", "format": "uuid"},
          "kind": {"type": "string", "enum": ["analysis", "plan", "comparison", "compression", "evaluation", "merge"]},
          "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
          "parameters": {"type": "object", "additionalProperties": true, "description": "The validated request (paths resolved)."},
          "progress": {"type": "object", "required": ["fraction", "message"], "properties": {
            "fraction": {"type": "number", "minimum": 0, "maximum": 1}, "message": {"type": "string"}}},
          "createdAt": {"type": "string", "format": "date-time"},
          "startedAt": {"type": "string", "format": "date-time", "nullable": true},
          "finishedAt": {"type": "string", "format": "date-time", "nullable": true},
          "error": {"type": "string", "nullable": true},
          "result": {"type": "string", "nullable": true, "description": "Server-side result location: the analysis store directory, or the plan file."},
          "cancelRequested": {"type": "boolean"},
          "attempts": {"type": "integer", "description": "Worker starts; above 1 after a resume."}
        }
      },
      "AnalysisRequest": {
        "type": "object", "additionalProperties": false, "required": ["base", "finetuned"],
        "properties": {
          "base": {"type": "string", "description": "Server-side checkpoint directory or file under an --allow-root."},
          "finetuned": {"type": "string"},
          "calibration": {"type": "string", "description": "Calibration safetensors file (optional)."},
          "include": {"type": "array", "items": {"type": "string"}},
          "exclude": {"type": "array", "items": {"type": "string"}},
          "maxRank": {"type": "integer", "minimum": 1},
          "seed": {"type": "integer", "minimum": 0},
          "skipMismatched": {"type": "boolean"},
          "allowMissingCalibration": {"type": "boolean"}
        }
      },
      "PlanRequest": {
        "type": "object", "additionalProperties": false, "required": ["budget"],
        "description": "Exactly one of analysis or profile.",
        "properties": {
          "analysis": {"type": "string", "description": "A succeeded analysis job id: the plan runs as a job (202)."},
          "profile": {"type": "string", "description": "A model profile name: shape-only plan, answered at once (200); presets only."},
          "budget": {"type": "string", "example": "1/16", "description": "As the CLI's --budget: '1/16', '0.0625', '850MiB', '1.2GB', '1.0bpp'."},
          "strategy": {"type": "string", "description": "'preset:NAME', 'greedy', 'genetic' or 'exact'. Default: 'exact' with 'analysis', 'preset:delta-come' with 'profile'."},
          "scope": {"type": "string", "enum": ["global", "type", "matrix"], "description": "Who shares the budget; default: 'type' for presets (the paper's rule), 'global' for greedy, genetic and exact."},
          "bits": {"type": "string", "default": "16,8,4,3,2,1,0"},
          "seed": {"type": "integer", "minimum": 0, "default": 0},
          "accounting": {"type": "string", "enum": ["artifact", "paper"], "default": "artifact"},
          "groupSize": {"type": "integer", "minimum": 1, "default": 128},
          "objective": {"type": "string", "enum": ["activation", "kronecker", "paired"], "description": "What plans minimize (with 'analysis'); default: the strongest the store supports."},
          "order": {"type": "string", "enum": ["feedback", "paper"], "description": "Segment order the error model measures (with 'analysis'); default: feedback. 'paper' is Delta-CoMe as published."}
        }
      },
      "ComparisonRequest": {
        "type": "object", "additionalProperties": false, "required": ["analysis", "budgets"],
        "properties": {
          "analysis": {"type": "string"},
          "budgets": {"type": "array", "minItems": 1, "items": {"type": "string"}},
          "strategies": {"type": "array", "items": {"type": "string"}, "default": ["greedy", "genetic", "exact", "preset:delta-come", "low-rank", "bitdelta"], "description": "'preset:NAME', 'greedy', 'genetic', 'exact', or the baselines 'low-rank' and 'bitdelta'."},
          "scope": {"type": "string", "enum": ["global", "type", "matrix"], "description": "Who shares the budget, for every strategy; default: each strategy its own ('type' for presets and low-rank, 'global' for the searches), recorded per row."},
          "bits": {"type": "string", "default": "16,8,4,3,2,1,0", "description": "Allowed bit-widths, comma-separated (0, dropping, is always allowed); recorded in the job's parameters."},
          "seed": {"type": "integer", "minimum": 0},
          "accounting": {"type": "string", "enum": ["artifact", "paper"]},
          "groupSize": {"type": "integer", "minimum": 1},
          "objective": {"type": "string", "enum": ["activation", "kronecker", "paired"], "description": "What plans minimize (with 'analysis'); default: the strongest the store supports."},
          "order": {"type": "string", "enum": ["feedback", "paper"], "description": "Segment order the error model measures (with 'analysis'); default: feedback. 'paper' is Delta-CoMe as published."}
        }
      },
      "CompressionRequest": {
        "type": "object", "additionalProperties": false, "required": ["base", "finetuned"],
        "description": "Exactly one of plan or planFile.",
        "properties": {
          "base": {"type": "string"}, "finetuned": {"type": "string"}, "calibration": {"type": "string"},
          "plan": {"type": "string", "description": "A succeeded plan job id."},
          "planFile": {"type": "string", "description": "A server-side plan JSON under an --allow-root."}
        }
      },
      "EvaluationRequest": {
        "type": "object", "additionalProperties": false,
        "description": "Exactly one of compression or artifact. base, finetuned and calibration default to the compression job's; the store (for the low-rank baseline) is the analysis of this server the artifact was made from.",
        "properties": {
          "compression": {"type": "string", "description": "A succeeded compression job id."},
          "artifact": {"type": "string", "description": "A server-side artifact directory under an --allow-root."},
          "base": {"type": "string"}, "finetuned": {"type": "string"}, "calibration": {"type": "string"}
        }
      },
      "MergeRequest": {
        "type": "object", "additionalProperties": false,
        "description": "Exactly one of compression or artifact; base defaults to the compression job's. The merged checkpoint (the weights, and the fine-tuned model's config.json, tokenizer and generation files the artifact stores, byte for byte) is written to <data-dir>/merges/<id> (the job's result).",
        "properties": {
          "compression": {"type": "string", "description": "A succeeded compression job id."},
          "artifact": {"type": "string", "description": "A server-side artifact directory under an --allow-root."},
          "base": {"type": "string"}
        }
      },
      "Comparison": {"type": "object", "additionalProperties": true, "description": "The comparison of `deltaplan compare --format json`: one row per strategy and budget (storage, α, scope, predicted error, gap to exact)."},
      "Evaluation": {"type": "object", "additionalProperties": true, "description": "The report of `deltaplan evaluate --format json`: per matrix and per layer type, actual against predicted error and the low-rank and BitDelta baselines."},
      "Plan": {"type": "object", "additionalProperties": true, "description": "The plan JSON, byte-identical to `deltaplan plan --out`."}
    },
    "responses": {
      "BadRequest": {"description": "Invalid input", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Unauthorized": {"description": "Missing or wrong bearer token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "NotFound": {"description": "No such job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Conflict": {"description": "The job's state does not allow it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "TooLarge": {"description": "Body over the limit (1 MiB by default)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "PathNotAllowed": {"description": "A path outside every --allow-root (symlinks followed) or missing", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Accepted": {"description": "Job queued", "headers": {"Location": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
    }
  },
  "security": [{"bearer": []}],
  "paths": {
    "/healthz": {"get": {"operationId": "health", "security": [], "responses": {"200": {"description": "Alive", "content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}}}}},
    "/metrics": {"get": {"operationId": "metrics", "responses": {"200": {"description": "Prometheus text format 0.0.4: deltaplan_jobs{state}, deltaplan_workers, deltaplan_workers_busy, deltaplan_job_duration_seconds (histogram), deltaplan_http_requests_total and deltaplan_http_request_duration_seconds (histogram) by route, method, status.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}}}},
    "/v1/openapi.json": {"get": {"operationId": "openapi", "responses": {"200": {"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}}}},
    "/v1/profiles": {"get": {"operationId": "listProfiles", "responses": {"200": {"description": "Model profiles and precision presets", "content": {"application/json": {"schema": {"type": "object", "properties": {"models": {"type": "array", "items": {"type": "object"}}, "presets": {"type": "array", "items": {"type": "object"}}}}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}}}},
    "/v1/analyses": {"post": {"operationId": "submitAnalysis",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AnalysisRequest"}}}},
      "responses": {"202": {"$ref": "#/components/responses/Accepted"}, "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "413": {"$ref": "#/components/responses/TooLarge"}, "422": {"$ref": "#/components/responses/PathNotAllowed"}}}},
    "/v1/plans": {"post": {"operationId": "submitPlan",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PlanRequest"}}}},
      "responses": {"200": {"description": "Shape-only plan (profile)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Plan"}}}}, "202": {"$ref": "#/components/responses/Accepted"}, "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}, "413": {"$ref": "#/components/responses/TooLarge"}}}},
    "/v1/plans/{id}": {"get": {"operationId": "getPlan", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "The plan JSON of a succeeded plan job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Plan"}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}}}},
    "/v1/comparisons": {"post": {"operationId": "submitComparison",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ComparisonRequest"}}}},
      "responses": {"202": {"$ref": "#/components/responses/Accepted"}, "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}, "413": {"$ref": "#/components/responses/TooLarge"}}}},
    "/v1/comparisons/{id}": {"get": {"operationId": "getComparison", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "The comparison of a succeeded comparison job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Comparison"}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}}}},
    "/v1/compressions": {"post": {"operationId": "submitCompression",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CompressionRequest"}}}},
      "responses": {"202": {"$ref": "#/components/responses/Accepted"}, "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}, "413": {"$ref": "#/components/responses/TooLarge"}, "422": {"$ref": "#/components/responses/PathNotAllowed"}}}},
    "/v1/evaluations": {"post": {"operationId": "submitEvaluation",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EvaluationRequest"}}}},
      "responses": {"202": {"$ref": "#/components/responses/Accepted"}, "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}, "413": {"$ref": "#/components/responses/TooLarge"}, "422": {"$ref": "#/components/responses/PathNotAllowed"}}}},
    "/v1/evaluations/{id}": {"get": {"operationId": "getEvaluation", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "The report of a succeeded evaluation job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Evaluation"}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}}}},
    "/v1/merges": {"post": {"operationId": "submitMerge",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MergeRequest"}}}},
      "responses": {"202": {"$ref": "#/components/responses/Accepted"}, "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}, "413": {"$ref": "#/components/responses/TooLarge"}, "422": {"$ref": "#/components/responses/PathNotAllowed"}}}},
    "/v1/jobs": {"get": {"operationId": "listJobs", "parameters": [
        {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]}},
        {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["analysis", "plan", "comparison", "compression", "evaluation", "merge"]}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
      "responses": {"200": {"description": "Jobs, newest first", "content": {"application/json": {"schema": {"type": "object", "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}}}}, "400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}}}},
    "/v1/jobs/{id}": {
      "get": {"operationId": "getJob", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}}},
      "delete": {"operationId": "cancelJob", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "A queued job, now cancelled", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}, "202": {"description": "A running job: it stops at its next matrix, removes its partial output and becomes cancelled", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}, "401": {"$ref": "#/components/responses/Unauthorized"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}}}
    }
  }
}
"""#
