// check.h -- the interface between the CUDA emulator (cuda_emu.h) and its checking mode (check.cpp), the emulated
// analogue of compute-sanitizer's memcheck and racecheck (ARCHITECTURE.md decision 18). Only the check variant of a
// kernels library (-DCUDA_EMU_CHECK, kernels/build/emu-check/) includes it.
//
// Kernel sources are compiled there with g++'s -fsanitize=thread *instrumentation* (no TSan runtime is linked):
// every load and store of kernel code calls __tsan_read<N> / __tsan_write<N> / __tsan_*_range, which check.cpp
// defines. While a block's threads run, an access is classified as the thread's own stack, emulator bookkeeping
// (threadIdx and friends, the launch's argument tuple), shared memory (the block's dynamic shared memory, or the
// worker thread's TLS block of this library, where static __shared__ variables live), host globals of this
// library, or device memory, which must lie inside an allocation that was live when the launch started.
// Which checks run is read from BD_EMU_CHECK at each launch ("memcheck", "racecheck", or both, comma-separated).
#pragma once
#include <stddef.h>

#define CUDA_EMU_ACCESS_READ 0
#define CUDA_EMU_ACCESS_WRITE 1
#define CUDA_EMU_ACCESS_ATOMIC 2  // memcheck only: atomics are never shared-memory hazards

namespace cuda_emu {
struct Block;
}
#define CUDA_EMU_CHECK_API __attribute__((visibility("hidden")))

// Before a grid runs (the launch lock is held): reads BD_EMU_CHECK and takes a snapshot of the emulated libcudart's
// allocation table. Returns 0, or 1 with a message in msg (an unknown checker name in BD_EMU_CHECK).
CUDA_EMU_CHECK_API int cuda_emu_check_launch(const void* kernel, const void* args, size_t args_bytes, char* msg, size_t msg_bytes);
CUDA_EMU_CHECK_API void cuda_emu_check_launch_end();
// A worker starts block b (its dynamic shared memory buffer holds dyn_capacity bytes, b->smem of them usable).
CUDA_EMU_CHECK_API void cuda_emu_check_block(cuda_emu::Block* b, size_t dyn_capacity);
// The worker switches to the block's threads / is back in its scheduler: accesses are checked only in between.
CUDA_EMU_CHECK_API void cuda_emu_check_enter();
CUDA_EMU_CHECK_API void cuda_emu_check_leave();
// An access that emulator code makes for the current thread (atomics, ldmatrix): checked like an instrumented one.
CUDA_EMU_CHECK_API void cuda_emu_check_access(const void* p, size_t bytes, int kind);
