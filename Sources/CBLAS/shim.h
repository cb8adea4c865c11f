#ifndef DELTAPLAN_CBLAS_SHIM_H
#define DELTAPLAN_CBLAS_SHIM_H
// OpenBLAS's cblas.h (the pthread build, found through pkg-config "openblas").
#include <cblas.h>
#endif
