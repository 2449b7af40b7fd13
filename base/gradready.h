/* gradready.h - where a data-parallel step's gradients become final.  The
 * step of a program that stops at the gradients (Program.grad_final) calls
 * rt_grads_ready(k) after each kernel k that wrote the last of one or more
 * of them: the cpu backend's generated code and the ref backend alike
 * (LLVM-free: part of libnetc_core and of every executable made by `netc
 * compile`).  The runtime's function, set here, starts summing those
 * gradients over the ranks while the backward pass goes on. */
#ifndef NETC_BASE_GRADREADY_H
#define NETC_BASE_GRADREADY_H

#include <stdint.h>

typedef void (*RtReadyFn)(void *ctx, int64_t kernel);
/* f(ctx, k) for every rt_grads_ready(k) from now on; NULL: nothing. */
void rt_grads_ready_set(RtReadyFn f, void *ctx);
void rt_grads_ready(int64_t kernel);

#endif
