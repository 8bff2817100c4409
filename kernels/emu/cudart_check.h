// cudart_check.h -- what the emulated libcudart offers the checking mode of the emulated device (ARCHITECTURE.md
// decision 18; kernels/emu/check.h): a snapshot of its allocation table, and a quarantine for freed device memory
// while BD_EMU_CHECK names memcheck (a freed range stays reserved and is not reused, so a later access to it is
// recognised as a use after free). Plain C types: the kernels libraries (check.cpp) include it too.
#pragma once
#include <stddef.h>
#include <stdint.h>

enum { BDEMU_ALLOC_DEVICE = 0, BDEMU_ALLOC_FREED = 1, BDEMU_ALLOC_PINNED = 2 };
struct bdemu_check_alloc {
  uintptr_t start;
  size_t size;  // bytes requested (not the 256-byte rounded size)
  int kind;     // BDEMU_ALLOC_*
};
// Copies up to `cap` entries of the allocation table -- live device allocations, quarantined frees and pinned host
// memory, sorted by start -- into `out` and returns how many there are (call again with a larger buffer when more).
extern "C" long bdemu_check_allocations(struct bdemu_check_alloc* out, long cap);

namespace bdemu_rt {
// device_free while memcheck is on: keeps [p, p + size) (its pages returned to the OS) and returns true; else false.
bool quarantine(void* p, size_t size);
// cudaDeviceReset: frees every quarantined range.
void release_quarantine();
}  // namespace bdemu_rt
