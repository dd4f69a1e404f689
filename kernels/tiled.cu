// tiled.cu — the classic shared-memory tiled SGEMM (one output element per thread).
//
//   C[b] = alpha * A[b] @ B[b] + beta * C[b]      b = blockIdx.z (batch index)
//
// Row-major A (M x K), B (K x N), C (M x N); batches are packed back to back (stride M*K, K*N,
// M*N elements). A block of TILE x TILE threads computes one TILE x TILE tile of C: per step it
// stages a TILE x TILE tile of A and of B in shared memory, then every thread accumulates a
// TILE-long dot product from shared memory (Kirk & Hwu, "Programming Massively Parallel
// Processors", ch. 5; the naive kernel of GPPerf with TILE in {1, 4, 8, 16, 32}).
//
// Launch: block (TILE, TILE, 1), grid (ceil(N / TILE), ceil(M / TILE), batch).
// Correct for any M, N, K >= 1: out-of-range tile elements load as 0 and are never stored.
// Each thread reads global memory once per K step per operand: global traffic is
// (M*N*K / TILE) * 2 floats, the quantity the tile size trades against occupancy.
//
// BLAS semantics: with beta == 0, C is not read (it may hold NaN or garbage).
// Instantiate by name expression, e.g. "tiled_sgemm<16>" (cupy RawModule name_expressions).

template <int TILE>
__global__ void __launch_bounds__(TILE * TILE)
tiled_sgemm(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
            int M, int N, int K, float alpha, float beta)
{
    static_assert(TILE >= 1 && TILE * TILE <= 1024, "TILE x TILE threads must fit one block");

    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];

    const int tx = threadIdx.x;   // column inside the tile
    const int ty = threadIdx.y;   // row inside the tile
    const int row = blockIdx.y * TILE + ty;
    const int col = blockIdx.x * TILE + tx;

    // 64-bit batch offsets: a batch of large matrices exceeds 2^31 elements.
    const long long batch = blockIdx.z;
    A += batch * M * K;
    B += batch * K * N;
    C += batch * M * N;

    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        // Coalesced loads: consecutive tx read consecutive addresses of one row.
        const int a_col = k0 + tx;
        const int b_row = k0 + ty;
        As[ty][tx] = (row < M && a_col < K) ? A[(long long)row * K + a_col] : 0.0f;
        Bs[ty][tx] = (b_row < K && col < N) ? B[(long long)b_row * N + col] : 0.0f;
        __syncthreads();

        // As[ty][i] is a broadcast within a warp row; Bs[i][tx] is conflict-free (tx is
        // consecutive). Zero padding makes the full TILE-long loop exact at the K edge.
#pragma unroll
        for (int i = 0; i < TILE; ++i) {
            acc += As[ty][i] * Bs[i][tx];
        }
        __syncthreads();
    }

    if (row < M && col < N) {
        const long long idx = (long long)row * N + col;
        C[idx] = (beta == 0.0f) ? alpha * acc : alpha * acc + beta * C[idx];
    }
}
