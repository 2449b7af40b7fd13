/* backend.c - the backends built into this binary.  ref and ref64 are always
 * here; optional ones (cpu needs LLVM, cuda needs the CUDA driver) are
 * registered by the program that links them (tools/netc.c). */
#include "backend.h"

#include <string.h>

enum { MAX_BACKENDS = 8 };
static const Backend *table[MAX_BACKENDS] = {&backend_ref, &backend_ref64};
static int count = 2;

void backend_register(const Backend *b) {
    if (backend_find(b->name)) return;
    IR_ASSERT(count < MAX_BACKENDS);
    table[count++] = b;
}

int backend_count(void) { return count; }

const Backend *backend_at(int i) { return i >= 0 && i < count ? table[i] : NULL; }

const Backend *backend_find(const char *name) {
    for (int i = 0; i < count; i++)
        if (strcmp(table[i]->name, name) == 0) return table[i];
    return NULL;
}

const Backend *backend_default(void) {
    const Backend *b = backend_find("cpu");
    return b ? b : &backend_ref;
}
