// Stand-in for the CUDA runtime API header in the CPU emulation (see zg_emulation.h): the types
// and error calls the kernels' host code uses. Launches in the emulation never fail.
#pragma once

typedef enum cudaError { cudaSuccess = 0 } cudaError_t;
typedef struct CUstream_st* cudaStream_t;

inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorName(cudaError_t) { return "cudaSuccess"; }
inline const char* cudaGetErrorString(cudaError_t) { return "no error"; }
