/* ref_kernels.c - instantiates ref_kernels.inc for float (ref_f32_*) and
 * double (ref_f64_*). */
#include "ref_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T float
#define P(name) ref_f32_##name
#define TEXP expf
#define TLOG logf
#include "ref_kernels.inc"

#define T double
#define P(name) ref_f64_##name
#define TEXP exp
#define TLOG log
#include "ref_kernels.inc"
