/// The version of DeltaPlan, recorded in every store, plan and artifact it writes.
public enum DeltaPlanVersion {
    public static let string = "0.1.0"
}
