// check_symbols.cpp -- names for the checking mode's reports (ARCHITECTURE.md decision 18): the kernel a function
// pointer points to and the static __shared__ variable at an offset of this library's TLS block, read from the
// library file's ELF symbol table (.symtab: kernels are hidden symbols, which dladdr does not see) and demangled.
// Read once, when a worker first runs a block in the checking mode (the TLS anchor) or at the first report.
#include "check_symbols.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace cuda_emu_check {
namespace {
struct Sym {
  uintptr_t value;  // functions: address relative to the load base; TLS: offset in the TLS block
  size_t size;
  std::string name;
};
struct Table {
  uintptr_t base = 0;
  std::vector<Sym> funcs, tls;
};

std::string demangle(const char* s) {
  int status = 0;
  char* d = abi::__cxa_demangle(s, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : s;
  free(d);
  if (out.compare(0, 5, "void ") == 0) out.erase(0, 5);  // a kernel template's return type
  return out;
}

// This library's symbol table (found through dladdr of a function of this file).
const Table& table() {
  static Table t;
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info;
    if (!dladdr(reinterpret_cast<void*>(&table), &info) || !info.dli_fname) return;
    t.base = reinterpret_cast<uintptr_t>(info.dli_fbase);
    int fd = open(info.dli_fname, O_RDONLY);
    if (fd < 0) return;
    struct stat st;
    void* map = fstat(fd, &st) == 0 ? mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (map == MAP_FAILED) return;
    const char* file = static_cast<const char*>(map);
    const auto* eh = reinterpret_cast<const ElfW(Ehdr)*>(file);
    const auto* sh = reinterpret_cast<const ElfW(Shdr)*>(file + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; ++i) {
      if (sh[i].sh_type != SHT_SYMTAB) continue;
      const auto* syms = reinterpret_cast<const ElfW(Sym)*>(file + sh[i].sh_offset);
      const char* names = file + sh[sh[i].sh_link].sh_offset;
      for (size_t k = 0; k < sh[i].sh_size / sizeof(ElfW(Sym)); ++k) {
        int type = ELF64_ST_TYPE(syms[k].st_info);
        if ((type != STT_FUNC && type != STT_TLS) || !syms[k].st_name) continue;
        Sym s{syms[k].st_value, syms[k].st_size, demangle(names + syms[k].st_name)};
        (type == STT_FUNC ? t.funcs : t.tls).push_back(std::move(s));
      }
    }
    munmap(map, st.st_size);
  });
  return t;
}
}  // namespace

std::string kernel_name(const void* fn) {
  const Table& t = table();
  uintptr_t rel = reinterpret_cast<uintptr_t>(fn) - t.base;
  for (const Sym& s : t.funcs)
    if (s.value == rel) return s.name;
  char buf[64];
  snprintf(buf, sizeof buf, "kernel at %p", fn);
  return buf;
}

std::string tls_variable(size_t offset) {
  for (const Sym& s : table().tls)
    if (offset >= s.value && offset < s.value + (s.size ? s.size : 1)) {
      char buf[40];
      snprintf(buf, sizeof buf, "+%zu", offset - s.value);
      return s.name + buf;
    }
  char buf[64];
  snprintf(buf, sizeof buf, "TLS offset %zu", offset);
  return buf;
}

size_t tls_offset(const char* name) {
  for (const Sym& s : table().tls)
    if (s.name == name) return s.value;
  return SIZE_MAX;
}
}  // namespace cuda_emu_check
