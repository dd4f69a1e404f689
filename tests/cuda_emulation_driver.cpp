// cuda_emulation_driver.cpp — run one GEMM kernel instantiation on the CPU (see
// cuda_host_emulation.hpp) and write C.
//
// Build (tests/test_kernels_cpu.py does this once per session):
//   g++ -std=c++20 -O1 -pthread -I<dir with kernel_instances.inc> cuda_emulation_driver.cpp
// where kernel_instances.inc holds lines  KERNEL("tiled_sgemm<16>", tiled_sgemm<16>)  — the
// same name expressions the cupy backend compiles.
//
// Usage: driver NAME GX GY GZ BX BY BZ M N K ALPHA BETA A.bin B.bin C.bin OUT.bin
// A.bin, B.bin, C.bin are raw little-endian float32 (batch = GZ matrices back to back);
// OUT.bin receives C after the kernel ran. Exit status 2 on bad arguments.

#include "cuda_host_emulation.hpp"

#include KERNELS_TILED
#include KERNELS_BLOCKED

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using GemmKernel = void (*)(const float*, const float*, float*, int, int, int, float, float);

struct Entry {
    const char* name;
    GemmKernel kernel;
};

#define KERNEL(name, ...) Entry{name, &__VA_ARGS__},
const Entry kKernels[] = {
#include "kernel_instances.inc"
};
#undef KERNEL

std::vector<float> read_floats(const char* path, std::size_t count)
{
    std::vector<float> data(count);
    std::FILE* f = std::fopen(path, "rb");
    if (!f || std::fread(data.data(), sizeof(float), count, f) != count) {
        std::fprintf(stderr, "cannot read %zu floats from %s\n", count, path);
        std::exit(2);
    }
    std::fclose(f);
    return data;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 17) {
        std::fprintf(stderr,
                     "usage: %s NAME GX GY GZ BX BY BZ M N K ALPHA BETA A B C OUT\n", argv[0]);
        return 2;
    }
    const std::string name = argv[1];
    GemmKernel kernel = nullptr;
    for (const Entry& e : kKernels) {
        if (name == e.name) kernel = e.kernel;
    }
    if (!kernel) {
        std::fprintf(stderr, "kernel %s is not instantiated in this driver\n", name.c_str());
        return 2;
    }
    const dim3 grid(std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]));
    const dim3 block(std::atoi(argv[5]), std::atoi(argv[6]), std::atoi(argv[7]));
    const int M = std::atoi(argv[8]);
    const int N = std::atoi(argv[9]);
    const int K = std::atoi(argv[10]);
    const float alpha = std::strtof(argv[11], nullptr);
    const float beta = std::strtof(argv[12], nullptr);
    const std::size_t batch = grid.z;

    // Over-aligned copies, as cudaMalloc gives (256-byte alignment).
    auto aligned = [](const std::vector<float>& v) {
        const std::size_t bytes = ((v.size() * sizeof(float) + 255) / 256) * 256;
        auto* p = static_cast<float*>(std::aligned_alloc(256, bytes ? bytes : 256));
        std::memcpy(p, v.data(), v.size() * sizeof(float));
        return p;
    };
    float* A = aligned(read_floats(argv[13], batch * M * K));
    float* B = aligned(read_floats(argv[14], batch * K * N));
    float* C = aligned(read_floats(argv[15], batch * M * N));

    cuda_emu::launch(kernel, grid, block, static_cast<const float*>(A),
                     static_cast<const float*>(B), C, M, N, K, alpha, beta);

    std::FILE* out = std::fopen(argv[16], "wb");
    const std::size_t count = batch * M * N;
    if (!out || std::fwrite(C, sizeof(float), count, out) != count) {
        std::fprintf(stderr, "cannot write %s\n", argv[16]);
        return 2;
    }
    std::fclose(out);
    std::free(A);
    std::free(B);
    std::free(C);
    return 0;
}
