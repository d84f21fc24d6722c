/*
 * A stand-in for the CUDA runtime, loaded by test_gpu through the same
 * dlopen path the agent uses, so the probe's logic is tested on machines
 * without a GPU.  It reports two devices; FAKE_CUDART_FAIL=1 makes
 * cudaGetDeviceCount fail the way a machine without a driver does.
 */
#include <stdlib.h>
#include <string.h>

int cudaGetDeviceCount(int *n);
int cudaDeviceGetAttribute(int *v, int attr, int dev);
int cudaSetDevice(int dev);
int cudaMemGetInfo(size_t *free_b, size_t *total);
int cudaGetDeviceProperties_v2(void *prop, int dev);
const char *cudaGetErrorString(int e);

static int current;

int
cudaGetDeviceCount(int *n)
{
    if (getenv("FAKE_CUDART_FAIL")) {
        return 35;
    }
    *n = 2;
    return 0;
}

int
cudaDeviceGetAttribute(int *v, int attr, int dev)
{
    *v = attr == 108 && dev == 0 ? 4 << 20 : 0;
    return 0;
}

int
cudaSetDevice(int dev)
{
    current = dev;
    return 0;
}

int
cudaMemGetInfo(size_t *free_b, size_t *total)
{
    *total = (size_t)(80 + current) << 30;
    *free_b = *total / 2;
    return 0;
}

int
cudaGetDeviceProperties_v2(void *prop, int dev)
{
    strcpy(prop, dev == 0 ? "Fake H100" : "Fake H100 #2");
    return 0;
}

const char *
cudaGetErrorString(int e)
{
    return e == 35 ? "CUDA driver version is insufficient for CUDA runtime "
                     "version"
                   : "unknown";
}
