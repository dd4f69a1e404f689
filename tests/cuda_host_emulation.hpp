// cuda_host_emulation.hpp — run CUDA C++ kernels on the CPU to check their indexing logic.
//
// Include this header before a .cu file and compile as C++20 with g++ (no CUDA toolkit needed).
// Model: one std::thread per CUDA thread of a block; blocks run one at a time (in x, y, z
// order); `__shared__` variables become function-local statics, which all threads of the
// running block share; `threadIdx`/`blockIdx`/`blockDim`/`gridDim` are thread_local;
// `__syncthreads()` is a std::barrier over the block's threads. The threads persist across
// blocks and meet at the barrier between blocks, so a block's shared state is never touched by
// the next block early.
//
// What this checks: index arithmetic, edge guards, shared-memory staging order and barrier
// placement (a barrier reached by only part of the block — undefined behaviour in CUDA —
// deadlocks here, so run kernels under a timeout). What it does not model: warp-synchronous
// code, atomics, memory-model subtleties, performance.
#pragma once

#if __cplusplus < 202002L
#error "cuda_host_emulation.hpp needs C++20 (std::barrier)"
#endif

#include <barrier>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

// CUDA qualifiers that mean nothing on the host.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

// CUDA's float4 is a 16-byte aligned struct of four floats (vector_types.h).
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace cuda_emu {
inline std::barrier<>* block_barrier = nullptr;
}  // namespace cuda_emu

inline void __syncthreads() { cuda_emu::block_barrier->arrive_and_wait(); }

namespace cuda_emu {

// kernel<<<grid, block>>>(args...) with the semantics described at the top of this file.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args)
{
    const unsigned nthreads = block.x * block.y * block.z;
    std::barrier<> barrier(static_cast<std::ptrdiff_t>(nthreads));
    block_barrier = &barrier;
    std::vector<std::thread> threads;
    threads.reserve(nthreads);
    for (unsigned t = 0; t < nthreads; ++t) {
        threads.emplace_back([=, &barrier] {
            threadIdx = uint3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            blockDim = block;
            gridDim = grid;
            for (unsigned bz = 0; bz < grid.z; ++bz) {
                for (unsigned by = 0; by < grid.y; ++by) {
                    for (unsigned bx = 0; bx < grid.x; ++bx) {
                        blockIdx = uint3(bx, by, bz);
                        kernel(static_cast<Params>(args)...);
                        barrier.arrive_and_wait();   // the block ends: all threads are done
                    }
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    block_barrier = nullptr;
}

}  // namespace cuda_emu
