#ifndef DELTAPLAN_CLAPACKE_SHIM_H
#define DELTAPLAN_CLAPACKE_SHIM_H
#include <lapacke.h>

// `lapack_int` is a macro, which Swift cannot import; this typedef gives it a name.
typedef lapack_int dp_lapack_int;
#endif
