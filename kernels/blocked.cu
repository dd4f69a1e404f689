// blocked.cu — register-blocked SGEMM: 2D block tiling, 2D thread tiling, float4 loads.
//
//   C[b] = alpha * A[b] @ B[b] + beta * C[b]      b = blockIdx.z (batch index)
//
// Row-major A (M x K), B (K x N), C (M x N); batches packed back to back.
// Design (the well-known progression of S. Boehm, "How to Optimize a CUDA Matmul Kernel for
// cuBLAS-like Performance", 2022, kernels 5-7; also CUTLASS's SIMT "threadblock / thread tile"):
//   * a block of (BM/TM) x (BN/TN) threads computes a BM x BN tile of C, walking K in BK steps;
//   * per step the block stages A (BM x BK) and B (BK x BN) in shared memory; A is stored
//     transposed (As[k][m]) so the inner loop reads both operands as float4 along M and N;
//   * each thread keeps a TM x TN accumulator tile in registers and does an outer product of a
//     TM-vector of A and a TN-vector of B per k: TM*TN FMAs per (TM + TN) shared loads, which is
//     what lifts the kernel from shared-memory bound to FMA bound;
//   * a thread's TM rows (TN columns) are TM/4 (TN/4) groups of 4 consecutive rows (columns)
//     spaced 4*(BM/TM) (4*(BN/TN)) apart: the 8 threads of a quarter-warp then read 8 consecutive
//     float4 of one shared row, which is free of bank conflicts (contiguous TN-wide thread tiles
//     read at a 32-byte stride and conflict 2-way);
//   * global loads are float4 when the operand's row starts are 16-byte aligned (leading
//     dimension % 4 == 0 and an aligned base pointer; checked at run time) and the 4 elements are
//     inside the matrix; otherwise guarded scalar loads that zero-fill outside the matrix, so any
//     M, N, K >= 1 is correct;
//   * STAGES == 2 double-buffers shared memory: tile t+1 is fetched into registers before the
//     FMAs on tile t and stored to the other buffer after them (one __syncthreads per step);
//     STAGES == 1 uses one buffer and fetches after the FMAs (two __syncthreads per step).
//
// Launch: block ((BM/TM) * (BN/TN), 1, 1), grid (ceil(N / BN), ceil(M / BM), batch).
// Requirements (checked by static_assert; the Python space in gemmperf/collect/kernel_space.py
// only generates valid ones): TM, TN multiples of 4; BM % TM == BN % TN == 0; BK % 4 == 0;
// the BM*BK/4 and BK*BN/4 float4 loads of a tile divide evenly among the threads.
// Static shared memory: STAGES * (BM + BN) * BK * 4 bytes (at most 48 KiB without opt-in).
//
// BLAS semantics: with beta == 0, C is not read. Instantiate by name expression, e.g.
// "blocked_sgemm<128, 128, 8, 8, 8, 2>" (template order BM, BN, BK, TM, TN, STAGES).

namespace blocked_detail {

// Four consecutive elements X[row][col .. col+3] of a row-major rows x cols matrix; elements
// outside the matrix read as 0. `vec` says row starts are 16-byte aligned (cols % 4 == 0 and an
// aligned base), so an in-range group at col % 4 == 0 is one aligned 128-bit load.
__device__ __forceinline__ float4 load4(const float* __restrict__ X, int row, int col, int rows,
                                        int cols, bool vec)
{
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (row < rows) {
        const float* p = X + (long long)row * cols + col;
        if (vec && col + 3 < cols) {
            v = *reinterpret_cast<const float4*>(p);
        } else {
            if (col < cols) v.x = p[0];
            if (col + 1 < cols) v.y = p[1];
            if (col + 2 < cols) v.z = p[2];
            if (col + 3 < cols) v.w = p[3];
        }
    }
    return v;
}

__device__ __forceinline__ bool aligned16(const void* p)
{
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0ull;
}

// Tile movement and math for one (BM, BN, BK, TM, TN) shape; all members are static.
template <int BM, int BN, int BK, int TM, int TN>
struct Tile {
    static constexpr int THREADS_M = BM / TM;         // threads along M
    static constexpr int THREADS_N = BN / TN;         // threads along N
    static constexpr int THREADS = THREADS_M * THREADS_N;
    static constexpr int A_LOADS = (BM * BK / 4) / THREADS;   // float4 loads per thread
    static constexpr int B_LOADS = (BK * BN / 4) / THREADS;

    static_assert(TM % 4 == 0 && TN % 4 == 0, "thread tiles are made of float4 groups");
    static_assert(BM % TM == 0 && BN % TN == 0, "thread tiles must divide the block tile");
    static_assert(BK % 4 == 0, "A tile rows are loaded as float4");
    static_assert(THREADS >= 32 && THREADS <= 1024, "32 .. 1024 threads per block");
    static_assert((BM * BK / 4) % THREADS == 0, "A tile loads must divide among the threads");
    static_assert((BK * BN / 4) % THREADS == 0, "B tile loads must divide among the threads");

    // Global -> registers: the A tile rows block_row .. +BM, columns k0 .. +BK, as float4 along K.
    static __device__ __forceinline__ void fetch_a(const float* __restrict__ A, int M, int K,
                                                   int block_row, int k0, int tid, bool vec,
                                                   float4 (&stage)[A_LOADS])
    {
#pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {
            const int idx = tid + l * THREADS;
            const int r = idx / (BK / 4);
            const int c = (idx % (BK / 4)) * 4;
            stage[l] = load4(A, block_row + r, k0 + c, M, K, vec);
        }
    }

    // Global -> registers: the B tile rows k0 .. +BK, columns block_col .. +BN, float4 along N.
    static __device__ __forceinline__ void fetch_b(const float* __restrict__ B, int K, int N,
                                                   int k0, int block_col, int tid, bool vec,
                                                   float4 (&stage)[B_LOADS])
    {
#pragma unroll
        for (int l = 0; l < B_LOADS; ++l) {
            const int idx = tid + l * THREADS;
            const int r = idx / (BN / 4);
            const int c = (idx % (BN / 4)) * 4;
            stage[l] = load4(B, k0 + r, block_col + c, K, N, vec);
        }
    }

    // Registers -> shared: A transposed (As[k][m]), B as is (Bs[k][n], one float4 store).
    static __device__ __forceinline__ void store(float (&As)[BK][BM], float (&Bs)[BK][BN],
                                                 int tid, const float4 (&a_stage)[A_LOADS],
                                                 const float4 (&b_stage)[B_LOADS])
    {
#pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {
            const int idx = tid + l * THREADS;
            const int r = idx / (BK / 4);
            const int c = (idx % (BK / 4)) * 4;
            As[c + 0][r] = a_stage[l].x;
            As[c + 1][r] = a_stage[l].y;
            As[c + 2][r] = a_stage[l].z;
            As[c + 3][r] = a_stage[l].w;
        }
#pragma unroll
        for (int l = 0; l < B_LOADS; ++l) {
            const int idx = tid + l * THREADS;
            const int r = idx / (BN / 4);
            const int c = (idx % (BN / 4)) * 4;
            *reinterpret_cast<float4*>(&Bs[r][c]) = b_stage[l];
        }
    }

    // BK rank-1 updates of the TM x TN accumulator from one shared tile.
    static __device__ __forceinline__ void multiply(const float (&As)[BK][BM],
                                                    const float (&Bs)[BK][BN], int thread_row,
                                                    int thread_col, float (&acc)[TM][TN])
    {
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a_frag[TM];
            float b_frag[TN];
#pragma unroll
            for (int g = 0; g < TM / 4; ++g) {
                const float4 v = *reinterpret_cast<const float4*>(
                    &As[kk][g * 4 * THREADS_M + thread_row * 4]);
                a_frag[g * 4 + 0] = v.x;
                a_frag[g * 4 + 1] = v.y;
                a_frag[g * 4 + 2] = v.z;
                a_frag[g * 4 + 3] = v.w;
            }
#pragma unroll
            for (int g = 0; g < TN / 4; ++g) {
                const float4 v = *reinterpret_cast<const float4*>(
                    &Bs[kk][g * 4 * THREADS_N + thread_col * 4]);
                b_frag[g * 4 + 0] = v.x;
                b_frag[g * 4 + 1] = v.y;
                b_frag[g * 4 + 2] = v.z;
                b_frag[g * 4 + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i) {
#pragma unroll
                for (int j = 0; j < TN; ++j) {
                    acc[i][j] += a_frag[i] * b_frag[j];
                }
            }
        }
    }
};

}  // namespace blocked_detail

template <int BM, int BN, int BK, int TM, int TN, int STAGES>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
blocked_sgemm(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
              int M, int N, int K, float alpha, float beta)
{
    static_assert(STAGES == 1 || STAGES == 2, "STAGES is 1 (single) or 2 (double buffer)");
    using T = blocked_detail::Tile<BM, BN, BK, TM, TN>;

    __shared__ __align__(16) float As[STAGES][BK][BM];
    __shared__ __align__(16) float Bs[STAGES][BK][BN];

    const int tid = threadIdx.x;
    const int thread_row = tid / T::THREADS_N;
    const int thread_col = tid % T::THREADS_N;
    const int block_row = blockIdx.y * BM;
    const int block_col = blockIdx.x * BN;

    const long long batch = blockIdx.z;
    A += batch * M * K;
    B += batch * K * N;
    C += batch * M * N;

    // float4 global access needs 16-byte aligned row starts (see load4).
    const bool a_vec = (K % 4 == 0) && blocked_detail::aligned16(A);
    const bool b_vec = (N % 4 == 0) && blocked_detail::aligned16(B);
    const bool c_vec = (N % 4 == 0) && blocked_detail::aligned16(C);

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    }

    float4 a_stage[T::A_LOADS];
    float4 b_stage[T::B_LOADS];

    const int num_tiles = (K + BK - 1) / BK;
    T::fetch_a(A, M, K, block_row, 0, tid, a_vec, a_stage);
    T::fetch_b(B, K, N, 0, block_col, tid, b_vec, b_stage);
    T::store(As[0], Bs[0], tid, a_stage, b_stage);
    __syncthreads();

    for (int t = 0; t < num_tiles; ++t) {
        const int cur = (STAGES == 2) ? (t & 1) : 0;
        const bool more = t + 1 < num_tiles;     // uniform across the block
        const int k_next = (t + 1) * BK;
        if (STAGES == 2 && more) {
            // Issue the next tile's global loads now; their latency hides behind the FMAs.
            T::fetch_a(A, M, K, block_row, k_next, tid, a_vec, a_stage);
            T::fetch_b(B, K, N, k_next, block_col, tid, b_vec, b_stage);
        }
        T::multiply(As[cur], Bs[cur], thread_row, thread_col, acc);
        if (STAGES == 2) {
            // The other buffer was last read in step t-1, which the barrier ending it closed.
            const int nxt = (STAGES == 2) ? (cur ^ 1) : 0;
            if (more) T::store(As[nxt], Bs[nxt], tid, a_stage, b_stage);
            __syncthreads();
        } else {
            __syncthreads();                     // everyone is done reading the only buffer
            if (more) {
                T::fetch_a(A, M, K, block_row, k_next, tid, a_vec, a_stage);
                T::fetch_b(B, K, N, k_next, block_col, tid, b_vec, b_stage);
                T::store(As[0], Bs[0], tid, a_stage, b_stage);
                __syncthreads();
            }
        }
    }

    // Epilogue: C = alpha * acc + beta * C, float4 where aligned and in range.
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = block_row + (i / 4) * 4 * T::THREADS_M + thread_row * 4 + (i % 4);
        if (row >= M) continue;
#pragma unroll
        for (int g = 0; g < TN / 4; ++g) {
            const int col = block_col + g * 4 * T::THREADS_N + thread_col * 4;
            float* p = C + (long long)row * N + col;
            float4 out = make_float4(alpha * acc[i][g * 4 + 0], alpha * acc[i][g * 4 + 1],
                                     alpha * acc[i][g * 4 + 2], alpha * acc[i][g * 4 + 3]);
            if (c_vec && col + 3 < N) {
                if (beta != 0.0f) {
                    const float4 old = *reinterpret_cast<const float4*>(p);
                    out.x += beta * old.x;
                    out.y += beta * old.y;
                    out.z += beta * old.z;
                    out.w += beta * old.w;
                }
                *reinterpret_cast<float4*>(p) = out;
            } else {
                const float o[4] = {out.x, out.y, out.z, out.w};
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    if (col + q < N) p[q] = (beta == 0.0f) ? o[q] : o[q] + beta * p[q];
                }
            }
        }
    }
}
