// Stand-in for the CUDA runtime header in the CPU emulation (see zg_emulation.h).
#pragma once

#include "cuda_runtime_api.h"
#include "zg_emulation.h"
