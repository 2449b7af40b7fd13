/* testutil.h - shared helpers for the cmocka tests. */
#ifndef NETC_TESTUTIL_H
#define NETC_TESTUTIL_H

#include <stddef.h>
#include "frontend/frontend.h"
#include "passes/program.h"
#include "codegen/backend.h"

/* Builds models/<name>.net (relative to the repository root) in the given
 * mode, with shapes inferred.  Returns 0, or -1 after printing errors. */
int tu_build(const char *path, IrMode mode, IrGraph *g, char **src);
/* Builds a model and runs the pipeline at a batch and resize. */
int tu_program(const char *path, IrMode mode, int64_t batch, int resize, int elem_bytes, Program *p);
/* Slot i of a float step's result `got` judged against the double
 * oracle's r64 (same program planned in double, p64), by ref's own
 * distance from double (r32): err = max|got - r64|, ref = max|r32 - r64|,
 * scale = max(max|r64|, 1e-2); within when err <= TU_FACTOR * max(ref,
 * TU_FLOOR * scale) (NaN never is).  Returns whether it is within; *ratio:
 * err / max(ref, TU_FLOOR * scale); the rest for messages (any may be NULL). */
enum { TU_FACTOR = 8 };
#define TU_FLOOR 1e-6
int tu_judge(const Program *p, const Program *p64, void **r32, void **r64, void **got, int i, double *err,
             double *ref, double *scale, double *ratio);
/* The memory plan's options tu_program uses (NULL: the defaults). */
extern const PlanOptions *tu_plan;
/* BackendOptions.tf32 of tu_step's runs (ref and ref64 then round the
 * operands of convs and linear layers to tf32: the oracle of the cuda
 * target's --precision tf32). */
extern int tu_tf32;
/* Reads a whole file (NUL-terminated); NULL if unreadable. */
char *tu_read(const char *path, size_t *len);
/* Deterministic uniform numbers in [-1, 1). */
double tu_rand(uint64_t *state);

/* One block per slot of p (64-byte aligned, with 64 bytes of slack), filled
 * from the stream `seed` whatever p's element size, so that a float and a
 * double program start from the same float-representable values: labels
 * 0..9, parameters in [-0.2, 0.2), running variances in [0.5, 2.5), the
 * rest in [-1, 1). */
void **tu_slots(const Program *p, uint64_t seed);
void tu_slots_free(const Program *p, void **s);
/* Compiles p on be (cpu: at --cpu spec, NULL native; 2 threads) and runs one
 * step (lr 0.05, dropout seed 1, step 0) on slots s.  0, or -1 after
 * printing why. */
int tu_step(const Backend *be, const char *cpu, const Program *p, void **s, ThreadPool *pool);

/* The emulated device (codegen/cuda/emu.h): the host C compiler ($CC, else
 * cc); whether it runs (else prints why the test is skipped); text compiled
 * by it into a shared object and opened (-std=c11 -O1, codegen/cuda on the
 * include path; emu_h, when not NULL, is an emu.h put beside the source,
 * found first), NULL after printing why. */
const char *tu_host_cc(void);
int tu_have_cc(void);
void *tu_host_so(const char *text, const char *emu_h);
/* text with its first `from` replaced by `to` (a planted error), malloc'd;
 * NULL when from is absent. */
char *tu_plant(const char *text, const char *from, const char *to);

#endif
