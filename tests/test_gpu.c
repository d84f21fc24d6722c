/* Tests for agent/gpu: the dlopen'd CUDA probe, against a fake runtime. */
#include "gpu.h"
#include "testutil.h"

START_TEST(test_no_runtime)
{
    struct agent_gpus g;

    agent_gpu_probe("libcudart-does-not-exist.so", &g);
    ck_assert_uint_eq(g.n, 0);
    ck_assert_str_eq(g.note, "no CUDA runtime (libcudart-does-not-exist.so "
                             "not loadable): no GPU tiers");
}
END_TEST

START_TEST(test_fake_runtime)
{
    struct agent_gpus g;

    agent_gpu_probe(FAKE_CUDART, &g);
    ck_assert_uint_eq(g.n, 2);
    ck_assert_str_eq(g.gpu[0].name, "Fake H100");
    ck_assert_uint_eq(g.gpu[0].memory_bytes, 80ULL << 30);
    ck_assert_uint_eq(g.gpu[0].l2_persist_max, 4 << 20);
    ck_assert_str_eq(g.gpu[1].name, "Fake H100 #2");
    ck_assert_uint_eq(g.gpu[1].memory_bytes, 81ULL << 30);
    ck_assert_uint_eq(g.gpu[1].l2_persist_max, 0);
    ck_assert(strstr(g.note, "2 GPU(s) via"));
}
END_TEST

START_TEST(test_fake_runtime_no_driver)
{
    struct agent_gpus g;

    setenv("FAKE_CUDART_FAIL", "1", 1);
    agent_gpu_probe(FAKE_CUDART, &g);
    unsetenv("FAKE_CUDART_FAIL");
    ck_assert_uint_eq(g.n, 0);
    ck_assert(strstr(g.note, "found, no usable GPU: CUDA driver version is "
                             "insufficient"));
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("gpu");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_no_runtime);
    tcase_add_test(tc, test_fake_runtime);
    tcase_add_test(tc, test_fake_runtime_no_driver);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
