import Foundation
import LinearAlgebra
import ModelProfiles

/// Per-matrix spectrum statistics of a store: what `deltaplan spectrum` prints.
public struct SpectrumReport: Sendable, Codable, Equatable {
    public struct Entry: Sendable, Codable, Equatable {
        public var name: String
        public var type: LayerType
        public var rows: Int
        public var columns: Int
        /// All stored singular values, descending.
        public var singularValues: [Double]
        public var storedRank: Int
        /// Roy & Vetterli's effective rank exp(−Σ pᵢ log pᵢ), pᵢ = σᵢ / Σσ, over the stored values.
        public var effectiveRank: Double
        /// Σ_{i<k} σᵢ² / ‖ΔW‖²_F for k = 2, 34, 128 (the paper's 8-bit, 8+3-bit boundaries, a group).
        public var energyTop2: Double
        public var energyTop34: Double
        public var energyTop128: Double
        /// Σ_{i<k} σᵢ² gᵢ / ‖ΔW X‖² for k = 2, 34, 128; nil when data-free (H = I, same as above).
        public var activationEnergyTop2: Double?
        public var activationEnergyTop34: Double?
        public var activationEnergyTop128: Double?
        /// ‖ΔW‖²_F and ‖ΔW X‖².
        public var weightEnergy: Double
        public var activationEnergy: Double
        /// Least-squares fit of log σᵢ = log c − p·log(i + 1) over the tail i ≥ 2 (GSL `gsl_fit_linear`).
        public var tailExponent: Double?
        public var tailCoefficient: Double?
        public var tailRSquared: Double?
        public var calibration: StoreManifest.CalibrationSource
        /// Which statistics the calibration file had for the matrix (nil with H = I, and for
        /// stores written before they were recorded).
        public var statistics: CalibrationStatistics?
    }

    public var store: String
    public var dataFree: Bool
    /// The calibration file's format version and metadata, when recorded.
    public var calibrationFile: StoreManifest.CalibrationFileRecord?
    /// The strongest error objective the statistics of every calibrated matrix support.
    public var supportedObjective: ErrorObjective?
    public var entries: [Entry]

    public init(_ store: SpectrumStore) throws(AnalysisError) {
        self.store = store.url.path
        dataFree = store.manifest.dataFree
        calibrationFile = store.manifest.calibrationFile
        supportedObjective = store.manifest.supportedObjective
        entries = []
        for record in store.matrices {
            let (sigma, g) = try store.spectrum(of: record)
            entries.append(Self.entry(record, sigma: sigma, g: g, calibrated: !store.manifest.dataFree))
        }
    }

    static func entry(_ r: StoreManifest.MatrixRecord, sigma: [Double], g: [Double], calibrated: Bool) -> Entry {
        let weightEnergy = r.weightEnergy ?? 0, activationEnergy = r.activationEnergy ?? 0
        func energy(_ k: Int) -> Double {
            weightEnergy > 0 ? sigma.prefix(k).reduce(0) { $0 + $1 * $1 } / weightEnergy : 0
        }
        func activation(_ k: Int) -> Double? {
            guard calibrated else { return nil }
            let captured = zip(sigma, g).prefix(k).reduce(0) { $0 + $1.0 * $1.0 * $1.1 }
            return activationEnergy > 0 ? captured / activationEnergy : 0
        }
        let total = sigma.reduce(0, +)
        let entropy = total > 0 ? sigma.reduce(0.0) { s, x in x > 0 ? s - (x / total) * log(x / total) : s } : 0
        var fit: PowerLawFit?
        let tail = Array(sigma.indices.dropFirst(2)).filter { sigma[$0] > 0 }
        if tail.count >= 3 {
            fit = try? fitPowerLaw(x: tail.map { Double($0 + 1) }, y: tail.map { sigma[$0] })
        }
        return Entry(
            name: r.name, type: r.type, rows: r.rows, columns: r.columns, singularValues: sigma,
            storedRank: r.storedRank ?? 0, effectiveRank: total > 0 ? exp(entropy) : 0,
            energyTop2: energy(2), energyTop34: energy(34), energyTop128: energy(128),
            activationEnergyTop2: activation(2), activationEnergyTop34: activation(34), activationEnergyTop128: activation(128),
            weightEnergy: weightEnergy, activationEnergy: activationEnergy,
            tailExponent: fit.map { -$0.exponent }, tailCoefficient: fit?.coefficient, tailRSquared: fit?.logFit.rSquared,
            calibration: r.calibration, statistics: r.statistics)
    }
}
