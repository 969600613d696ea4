// The fiber scheduler behind cuda_emu.h. One block at a time: every thread
// a ucontext fiber with its own stack (a guard page below it, so an overflow
// faults instead of corrupting a neighbour; mapped once per launch and
// reused by each block, whose fibers have all returned); the scheduler resumes, in the
// chosen order, every fiber that is not waiting on a barrier that has not
// yet opened, until all have returned. A pass that resumes nobody while
// fibers remain is a deadlock.
//
// Under AddressSanitizer every switch is announced to it (the fiber
// interface of sanitizer/common_interface_defs.h), so a sanitizer build runs
// emulated kernels as a memcheck: an access past a buffer the test allocated
// to its exact size is a report, as compute-sanitizer's would be on a GPU.
#include "emu/cuda_emu.h"

#if defined(__SANITIZE_ADDRESS__)
#define CT_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CT_EMU_ASAN 1
#endif
#endif
#ifdef CT_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace ct_emu {
namespace {

constexpr size_t kStackBytes = 128 * 1024;
constexpr int kWarp = 32;

struct Barrier {
    unsigned size = 0, arrived = 0;
    unsigned long long generation = 0;
    std::string name;
};

struct Fiber {
    ucontext_t ctx;
    void *stack = nullptr;     // the usable part of its mapping (Launch::stacks)
    void *fake_stack = nullptr;  // AddressSanitizer's, while switched out
    Dim3 tid;
    int warp = 0, lane = 0;
    bool done = false;
    Barrier *waiting = nullptr;
    unsigned long long waiting_generation = 0;
};

struct Warp {
    Barrier barrier;
    unsigned size = 0;
    // Two slot sets used in turn: a lane can only write a set again after
    // every lane has passed the barrier that follows the reads of it.
    unsigned char slots[2][kWarp][8];
    unsigned exchanges = 0;  // per lane, equal across the warp between barriers
};

struct Launch {
    Dim3 grid, block, block_id;
    const std::function<void()> *kernel = nullptr;
    ucontext_t scheduler;
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    std::vector<unsigned> warp_exchanges;  // per thread: which slot set is next
    Barrier block_barrier;
    Fiber *current = nullptr;
    std::string error;
    // Stack mappings, made for the first block and reused by the next ones
    // (a grid of a thousand blocks would otherwise map and unmap a quarter
    // of a million stacks); unmapped when the launch ends.
    std::vector<void *> stacks;
    size_t stack_mapping_bytes = 0;
};

Launch *g_launch = nullptr;

// The fiber switches as AddressSanitizer wants them told (no-ops without
// it): before a switch, where the next stack is (nullptr for the fake stack
// of a fiber that is ending); after one, on the new stack.
const void *g_scheduler_stack = nullptr;  // learnt from the first switch into a fiber
size_t g_scheduler_stack_bytes = 0;

void before_switch(void **fake_stack, const void *to_bottom, size_t to_bytes) {
#ifdef CT_EMU_ASAN
    __sanitizer_start_switch_fiber(fake_stack, to_bottom, to_bytes);
#else
    (void)fake_stack, (void)to_bottom, (void)to_bytes;
#endif
}

void after_switch(void *fake_stack, const void **from_bottom, size_t *from_bytes) {
#ifdef CT_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, from_bottom, from_bytes);
#else
    (void)fake_stack, (void)from_bottom, (void)from_bytes;
#endif
}

Launch &active() {
    if (!g_launch) throw std::logic_error("ct_emu: a device function was called outside ct_emu::launch");
    return *g_launch;
}

// Ends the current fiber with an error; the scheduler throws it. A C
// string: the fiber's frames are never unwound, so nothing it owns on the
// heap would ever be freed.
[[noreturn]] void fail(const char *msg) {
    Launch &l = active();
    if (l.error.empty()) l.error = msg;
    l.current->done = true;
    before_switch(nullptr, g_scheduler_stack, g_scheduler_stack_bytes);
    setcontext(&l.scheduler);
    abort();  // setcontext does not return
}

void wait_at(Barrier &b) {
    Launch &l = active();
    Fiber &f = *l.current;
    if (++b.arrived == b.size) {  // the last to arrive opens it and runs on
        b.arrived = 0;
        ++b.generation;
        return;
    }
    f.waiting = &b;
    f.waiting_generation = b.generation;
    before_switch(&f.fake_stack, g_scheduler_stack, g_scheduler_stack_bytes);
    swapcontext(&f.ctx, &l.scheduler);
    after_switch(f.fake_stack, nullptr, nullptr);
}

void fiber_main() {
    after_switch(nullptr, &g_scheduler_stack, &g_scheduler_stack_bytes);
    Launch &l = active();
    (*l.kernel)();
    l.current->done = true;
    before_switch(nullptr, g_scheduler_stack, g_scheduler_stack_bytes);
}  // returns to uc_link, the scheduler

void free_stacks(Launch &l) {
    for (void *m : l.stacks) munmap(m, l.stack_mapping_bytes);
    l.stacks.clear();
    l.fibers.clear();
}

std::string describe_stuck(const Launch &l) {
    for (const Fiber &f : l.fibers) {
        if (f.done || !f.waiting) continue;
        unsigned done = 0;
        for (const Fiber &g : l.fibers) done += g.done;
        return "block " + std::to_string(l.block_id.x) + ": " + f.waiting->name + " reached by " +
               std::to_string(f.waiting->arrived) + " of " + std::to_string(f.waiting->size) + " threads (" +
               std::to_string(done) + " returned, the rest wait elsewhere); first waiting thread " +
               std::to_string(f.tid.x);
    }
    return "block " + std::to_string(l.block_id.x) + ": no thread can run";
}

void run_block(Launch &l, Order order) {
    const unsigned n = l.block.x;
    const long page = sysconf(_SC_PAGESIZE);
    l.fibers.assign(n, Fiber{});
    l.warps.assign((n + kWarp - 1) / kWarp, Warp{});
    l.block_barrier = Barrier{};
    l.block_barrier.size = n;
    l.block_barrier.name = "__syncthreads()";
    for (size_t w = 0; w < l.warps.size(); ++w) {
        Warp &wp = l.warps[w];
        wp.size = std::min<unsigned>(kWarp, n - (unsigned)w * kWarp);
        wp.barrier.size = wp.size;
        wp.barrier.name = "the shuffle of warp " + std::to_string(w);
    }
    l.warp_exchanges.assign(n, 0);
    l.stack_mapping_bytes = kStackBytes + (size_t)page;
    for (unsigned t = 0; t < n; ++t) {
        Fiber &f = l.fibers[t];
        f.tid.x = t;
        f.warp = (int)(t / kWarp);
        f.lane = (int)(t % kWarp);
        if (t >= l.stacks.size()) {
            void *m = mmap(nullptr, l.stack_mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) {
                free_stacks(l);
                throw std::runtime_error("ct_emu: cannot map a fiber stack");
            }
            mprotect(m, (size_t)page, PROT_NONE);  // the guard page (stacks grow down)
            l.stacks.push_back(m);
        }
        getcontext(&f.ctx);
        f.stack = (char *)l.stacks[t] + page;
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = &l.scheduler;
        makecontext(&f.ctx, fiber_main, 0);
    }
    size_t left = n;
    while (left > 0) {
        bool ran = false;
        for (unsigned i = 0; i < n; ++i) {
            Fiber &f = l.fibers[order == Order::kAscending ? i : n - 1 - i];
            if (f.done) continue;
            if (f.waiting && f.waiting->generation == f.waiting_generation) continue;
            f.waiting = nullptr;
            l.current = &f;
            void *scheduler_fake_stack = nullptr;
            before_switch(&scheduler_fake_stack, f.stack, kStackBytes);
            swapcontext(&l.scheduler, &f.ctx);
            after_switch(scheduler_fake_stack, nullptr, nullptr);
            l.current = nullptr;
            ran = true;
            if (!l.error.empty()) {
                const std::string e = "block " + std::to_string(l.block_id.x) + ", thread " +
                                      std::to_string(f.tid.x) + ": " + l.error;
                free_stacks(l);
                throw std::runtime_error(e);
            }
            if (f.done) --left;
        }
        if (!ran) {
            const std::string e = "ct_emu: deadlock in " + describe_stuck(l);
            free_stacks(l);
            throw std::runtime_error(e);
        }
    }
    l.fibers.clear();  // every fiber returned: its stack can serve the next block
}

}  // namespace

void launch(unsigned grid, unsigned threads, const std::function<void()> &kernel, Order order) {
    if (g_launch) throw std::logic_error("ct_emu: launch inside a launch");
    if (grid < 1 || threads < 1 || threads > 1024)
        throw std::invalid_argument("ct_emu: a launch needs 1+ blocks of 1..1024 threads");
    Launch l;
    l.grid.x = grid;
    l.block.x = threads;
    l.kernel = &kernel;
    g_launch = &l;
    try {
        for (unsigned b = 0; b < grid; ++b) {
            l.block_id.x = b;
            run_block(l, order);
        }
    } catch (...) {
        free_stacks(l);
        g_launch = nullptr;
        throw;
    }
    free_stacks(l);
    g_launch = nullptr;
}

const Dim3 &thread_idx() { return active().current->tid; }
const Dim3 &block_idx() { return active().block_id; }
const Dim3 &block_dim() { return active().block; }
const Dim3 &grid_dim() { return active().grid; }

void sync_threads() { wait_at(active().block_barrier); }

void warp_exchange(unsigned mask, const void *mine, void *out, size_t bytes, int src) {
    Launch &l = active();
    Fiber &f = *l.current;
    Warp &w = l.warps[(size_t)f.warp];
    const unsigned full = w.size == kWarp ? 0xffffffffu : (1u << w.size) - 1u;
    if (mask != full) {
        char msg[96];
        snprintf(msg, sizeof msg, "a shuffle with mask %u (only the full warp is emulated)", mask);
        fail(msg);
    }
    if (bytes > 8) fail("a shuffle of more than 8 bytes");
    unsigned &turn = l.warp_exchanges[f.tid.x];
    unsigned char(*slots)[8] = w.slots[turn & 1u];
    ++turn;
    memcpy(slots[f.lane], mine, bytes);
    wait_at(w.barrier);
    if (src < 0 || src >= (int)w.size) src = f.lane;
    memcpy(out, slots[src], bytes);
}

}  // namespace ct_emu
