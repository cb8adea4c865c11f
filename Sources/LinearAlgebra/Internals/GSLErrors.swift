import CGSL

/// GSL's default error handler aborts the process. DeltaPlan checks every GSL status code
/// itself, so the handler is switched off once, before the first GSL call that can fail.
enum GSLErrorHandling {
    static let disabled: Void = { _ = gsl_set_error_handler_off() }()
}
