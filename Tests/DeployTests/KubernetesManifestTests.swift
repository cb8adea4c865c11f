import Foundation
import Testing
import Yams

/// The manifests of `Deploy/kubernetes/` as Kubernetes would read them: the Job essentials a cluster
/// checks (CI also validates them against Kubernetes' own schemas: `Deploy/kubernetes/validate.sh`),
/// and what no schema can check — each container's command run through `/bin/sh` in front of a
/// stand-in `deltaplan`, for every completion index.
@Suite("Kubernetes manifests")
struct KubernetesManifestTests {
    let kubernetes = deployDirectory.appendingPathComponent("kubernetes")

    /// Every document of a manifest file; a YAML error fails the test.
    func documents(_ file: String) throws -> [Node] {
        let text = try String(contentsOf: kubernetes.appendingPathComponent(file), encoding: .utf8)
        var sequence = try Yams.compose_all(yaml: text)
        var nodes: [Node] = []
        while let node = sequence.next() { nodes.append(node) }
        if let error = sequence.error { throw error }
        return nodes
    }

    /// The single object of `kind` in a file.
    func object(_ kind: String, in file: String) throws -> Node {
        let matches = try documents(file).filter { $0["kind"]?.string == kind }
        #expect(matches.count == 1, "\(file): \(matches.count) objects of kind \(kind)")
        return try #require(matches.first, "\(file) has no \(kind)")
    }

    /// A Job's essentials, as the API server checks them; returns its pod template's spec.
    func checkJob(_ job: Node, _ file: String) throws -> Node {
        #expect(job["apiVersion"]?.string == "batch/v1", "\(file)")
        let name = try #require(job["metadata"]?["name"]?.string, "\(file): no metadata.name")
        #expect(name.wholeMatch(of: /[a-z0-9]([-a-z0-9]*[a-z0-9])?/) != nil && name.count <= 63, "\(file): name \(name)")
        let spec = try #require(job["spec"], "\(file): no spec")
        let completions = spec["completions"]?.int ?? 1, parallelism = spec["parallelism"]?.int ?? 1
        #expect(completions >= 1 && (1...completions).contains(parallelism), "\(file): completions \(completions), parallelism \(parallelism)")
        let pod = try #require(spec["template"]?["spec"], "\(file): no spec.template.spec")
        // A Job's pods may not restart Always.
        #expect(["Never", "OnFailure"].contains(pod["restartPolicy"]?.string ?? ""), "\(file): restartPolicy")
        let containers = try #require(pod["containers"]?.sequence, "\(file): no containers")
        #expect(!containers.isEmpty)
        let volumes = Set((pod["volumes"]?.sequence ?? []).compactMap { $0["name"]?.string })
        for container in containers {
            #expect(container["name"]?.string != nil && container["image"]?.string != nil, "\(file): a container without name or image")
            for mount in container["volumeMounts"]?.sequence ?? [] {
                let volume = mount["name"]?.string ?? ""
                #expect(volumes.contains(volume), "\(file): volumeMount \(volume) names no volume of the pod (\(volumes.sorted()))")
            }
        }
        return pod
    }

    /// The one container's environment (plain values only: the manifests use no valueFrom).
    func environment(_ container: Node) throws -> [String: String] {
        var environment: [String: String] = [:]
        for variable in container["env"]?.sequence ?? [] {
            let name = try #require(variable["name"]?.string)
            environment[name] = try #require(variable["value"]?.string, "\(name) has no plain value")
        }
        return environment
    }

    /// Runs a container's command and arguments (command `/bin/sh -c SCRIPT`) with its environment and
    /// `extra`, `deltaplan` being a stand-in that prints its arguments; returns them.
    func run(_ container: Node, extra: [String: String] = [:]) throws -> [String] {
        let command = (container["command"]?.sequence ?? []).compactMap(\.string) + (container["args"]?.sequence ?? []).compactMap(\.string)
        try #require(command.count == 3 && command[0] == "/bin/sh" && command[1] == "-c", "command: \(command)")
        let fake = try FakeDeltaplan()
        defer { fake.cleanUp() }
        var environment = try self.environment(container).merging(extra) { _, new in new }
        environment["PATH"] = "\(fake.directory.path):/usr/bin:/bin"
        let run = try runScript("/bin/sh", ["-c", command[2]], environment: environment)
        #expect(run.status == 0, "\(run.errors)")
        return run.output.split(separator: "\n").map(String.init)
    }

    @Test("the indexed Job: pod I of N runs analyze --shard I+1/N, the N shards exactly once")
    func indexedJobCoversEveryShard() throws {
        let file = "analyze-indexed-job.yaml"
        let job = try object("Job", in: file)
        let pod = try checkJob(job, file)
        #expect(job["spec"]?["completionMode"]?.string == "Indexed")
        let completions = try #require(job["spec"]?["completions"]?.int)
        let container = try #require(pod["containers"]?.sequence?.first)
        var shards: [String] = []
        for index in 0..<completions {
            let arguments = try run(container, extra: ["JOB_COMPLETION_INDEX": "\(index)"])
            #expect(arguments.first == "analyze")
            shards.append(try #require(value(of: "--shard", in: arguments), "no --shard in \(arguments)"))
            let environment = try self.environment(container)
            #expect(value(of: "--out", in: arguments) == environment["STORE"])
            #expect(value(of: "--base", in: arguments) == environment["BASE"])
            #expect(value(of: "--finetuned", in: arguments) == environment["FINETUNED"])
        }
        // SHARDS must equal completions: else shards would be missing or out of range.
        #expect(shards == (1...completions).map { "\($0)/\(completions)" })
    }

    @Test("the finalize Job finalizes the indexed Job's store, on the same claim at the same path")
    func finalizeJobFinalizesTheSameStore() throws {
        let shards = try object("Job", in: "analyze-indexed-job.yaml")
        let finalize = try object("Job", in: "analyze-finalize-job.yaml")
        let pod = try checkJob(finalize, "analyze-finalize-job.yaml")
        let shardPod = try checkJob(shards, "analyze-indexed-job.yaml")
        #expect(finalize["spec"]?["completionMode"]?.string != "Indexed")
        let shardContainer = try #require(shardPod["containers"]?.sequence?.first)
        let container = try #require(pod["containers"]?.sequence?.first)
        let store = try #require(try environment(shardContainer)["STORE"])
        #expect(try run(container) == ["analyze", "--finalize", store])
        // The same claim mounted at the same path: the store is the same directory.
        func mounts(_ pod: Node) -> [String: String] {
            var claims: [String: String] = [:]
            for volume in pod["volumes"]?.sequence ?? [] {
                claims[volume["name"]?.string ?? ""] = volume["persistentVolumeClaim"]?["claimName"]?.string
            }
            var byPath: [String: String] = [:]
            for mount in pod["containers"]?.sequence?.first?["volumeMounts"]?.sequence ?? [] {
                byPath[mount["mountPath"]?.string ?? ""] = claims[mount["name"]?.string ?? ""]
            }
            return byPath
        }
        #expect(mounts(pod) == mounts(shardPod) && !mounts(pod).isEmpty)
    }

    @Test("the claim the Jobs mount is declared, and many nodes can mount it read-write")
    func claimIsShared() throws {
        let claim = try object("PersistentVolumeClaim", in: "analyze-indexed-job.yaml")
        let name = try #require(claim["metadata"]?["name"]?.string)
        #expect(claim["apiVersion"]?.string == "v1")
        #expect(claim["spec"]?["accessModes"]?.sequence?.compactMap(\.string) == ["ReadWriteMany"])
        for file in ["analyze-indexed-job.yaml", "analyze-finalize-job.yaml"] {
            let pod = try #require(try object("Job", in: file)["spec"]?["template"]?["spec"])
            let claims = (pod["volumes"]?.sequence ?? []).compactMap { $0["persistentVolumeClaim"]?["claimName"]?.string }
            #expect(claims == [name], "\(file) mounts \(claims)")
        }
    }
}
