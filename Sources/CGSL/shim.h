#ifndef DELTAPLAN_CGSL_SHIM_H
#define DELTAPLAN_CGSL_SHIM_H
// Only GSL headers that do not pull in gsl_cblas.h: its CBLAS_* enums clash with OpenBLAS's
// cblas.h in Swift ("'CBLAS_TRANSPOSE' has different definitions in different modules").
#include <gsl/gsl_errno.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_fit.h>

// From gsl_randist.h, which includes gsl_matrix.h and so gsl_cblas.h; declared here instead.
double gsl_ran_gaussian_ziggurat(const gsl_rng *r, const double sigma);

// Swift 6 rejects C globals such as `gsl_rng_mt19937` as shared mutable state.
static inline const gsl_rng_type *dp_gsl_rng_mt19937(void) { return gsl_rng_mt19937; }
#endif
