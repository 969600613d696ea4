// Host memory for an op under test that runs on the CPU (a CPU reference,
// an emulated kernel): each buffer its own allocation of exactly its size,
// so that in a sanitizer build an access one past its end is a report, as
// compute-sanitizer's would be on a GPU. Freed with the object.
#pragma once

#include <cstring>
#include <memory>
#include <vector>

namespace ct_test {

class HostBlocks {
  public:
    // A copy of n bytes (n may be 0: a 1-byte block, never a null pointer).
    void *put_bytes(const void *p, size_t n) {
        blocks_.emplace_back(new unsigned char[n ? n : 1]);  // new's alignment (16) suits every type here
        if (n) std::memcpy(blocks_.back().get(), p, n);
        return blocks_.back().get();
    }
    static void get_bytes(void *host, const void *p, size_t n) {
        if (n) std::memcpy(host, p, n);
    }

  private:
    std::vector<std::unique_ptr<unsigned char[]>> blocks_;
};

}  // namespace ct_test
