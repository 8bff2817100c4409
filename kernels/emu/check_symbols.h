// check_symbols.h -- names in the checking mode's reports (check_symbols.cpp): kernels and static __shared__ variables.
#pragma once
#include <stddef.h>
#include <string>

namespace cuda_emu_check {
// The demangled name of the kernel `fn` points to ("bd::unary_kernel<float, 3>(bd::Strided, float*, ...)").
std::string kernel_name(const void* fn);
// The static __shared__ variable at `offset` of this library's TLS block, as "kernel(...)::name+byte".
std::string tls_variable(size_t offset);
// The offset in this library's TLS block of the TLS symbol `name` (as the symbol table spells it), or SIZE_MAX.
size_t tls_offset(const char* name);
}  // namespace cuda_emu_check
