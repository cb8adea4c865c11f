import Analysis
import Checkpoint
import Foundation
import ModelProfiles
import Optimizer

/// Why a fleet cannot be planned or written.
public enum FleetError: Error, Equatable, CustomStringConvertible {
    /// Two stores analyze fine-tunes of different bases: their deltas do not share one base.
    case differentBases(first: String, other: String, reason: String)
    case duplicateName(String)
    /// A name that cannot name its plan file `NAME.json` beside `fleet.json`.
    case invalidName(String, reason: String)
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .differentBases(first, other, reason):
            "stores '\(first)' and '\(other)' are not fine-tunes of the same base: \(reason)"
        case let .duplicateName(name): "the fleet names '\(name)' twice"
        case let .invalidName(name, reason): "the fleet member name '\(name)' \(reason)"
        case let .io(path, reason): "cannot write the fleet to \(path): \(reason)"
        }
    }
}

/// One store of a fleet, measured, with its name and weight.
public struct FleetStore {
    public var name: String
    public var planning: StorePlanning
    public var weight: Double
    /// Its quality floor (``FleetMember/maxRelativeError``).
    public var maxRelativeError: Double?

    /// A member's name names its plan file, `NAME.json`: letters, digits, `.`, `_` and `-`, not
    /// starting with `.`, and not `fleet` (the summary's name).
    public static func checkName(_ name: String) throws(FleetError) {
        let allowed = name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0) }
        guard !name.isEmpty, allowed else { throw .invalidName(name, reason: "may hold only letters, digits, '.', '_' and '-'") }
        guard !name.hasPrefix(".") else { throw .invalidName(name, reason: "must not start with '.'") }
        guard name != "fleet" else { throw .invalidName(name, reason: "is taken by the summary, fleet.json") }
    }

    public init(name: String, planning: StorePlanning, weight: Double = 1, maxRelativeError: Double? = nil) {
        self.name = name
        self.planning = planning
        self.weight = weight
        self.maxRelativeError = maxRelativeError
    }
}

/// `deltaplan fleet`: the stores' plans under one budget (``planFleet(_:budget:storage:menu:strategy:seed:toolVersion:overrides:library:)``),
/// after checking that every store is a fine-tune of the same base (same base files: names, sizes
/// and SHA-256 of headers and contents); `overrides` (pins, bits-for rules) apply to every store.
public func planFleet(
    _ stores: [FleetStore], budget: GivenBudget, storage: StorageModel, menu: [Int], strategy: Strategy, seed: UInt64,
    overrides: Overrides = Overrides()
) throws -> FleetPlan {
    var seen = Set<String>()
    for s in stores {
        try FleetStore.checkName(s.name)
        guard seen.insert(s.name).inserted else { throw FleetError.duplicateName(s.name) }
    }
    if let first = stores.first {
        let reference = baseIdentity(first.planning.store)
        for other in stores.dropFirst() {
            let identity = baseIdentity(other.planning.store)
            guard identity == reference else {
                throw FleetError.differentBases(
                    first: first.name, other: other.name,
                    reason: "\(first.planning.store.manifest.inputs.base.path) and \(other.planning.store.manifest.inputs.base.path) differ in "
                        + (Set(identity.map(\.name)) == Set(reference.map(\.name)) ? "content" : "files"))
            }
        }
    }
    let members = stores.map {
        FleetMember(name: $0.name, spectra: $0.planning.spectra, weight: $0.weight,
                    source: .init(kind: "store", name: $0.planning.store.url.lastPathComponent, hash: $0.planning.store.identity),
                    maxRelativeError: $0.maxRelativeError)
    }
    var fleet = try planFleet(members, budget: budget, storage: storage, menu: menu, strategy: strategy, seed: seed,
                              toolVersion: DeltaPlanVersion.string, overrides: overrides)
    for i in fleet.plans.indices { stores[i].planning.recordMeasurement(in: &fleet.plans[i]) }
    return fleet
}

/// What identifies a store's base: its files' names, sizes and hashes (not paths or times).
private func baseIdentity(_ store: SpectrumStore) -> [FileFingerprint] {
    store.manifest.inputs.base.files.map {
        var f = $0
        f.modified = 0
        return f
    }.sorted { $0.name < $1.name }
}

extension FleetPlan {
    /// Writes `DIR/NAME.json` per member (the ordinary plan format) and `DIR/fleet.json`, as one
    /// directory published atomically (an existing `DIR` is replaced only once the new one is whole).
    public func write(names: [String], to directory: URL) throws(FleetError) {
        precondition(names.count == plans.count, "one name per plan")
        let temporary: URL
        do { temporary = try AtomicFile.makeTemporaryDirectory(for: directory) } catch { throw .io(path: directory.path, reason: "\(error)") }
        do {
            for (name, plan) in zip(names, plans) {
                try plan.write(to: temporary.appendingPathComponent("\(name).json"))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            var data = try encoder.encode(summary)
            data.append(0x0A)
            try AtomicFile.write(data: data, to: temporary.appendingPathComponent("fleet.json"))
            try AtomicFile.publishDirectory(temporary, as: directory)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw .io(path: directory.path, reason: "\(error)")
        }
    }
}
