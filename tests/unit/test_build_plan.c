/*
 * The build plan's model (routing/build_plan.h): fits recover the curves
 * they are given, the band widens away from the trials, sample sizes and
 * scaled memory, the NOTICE parser, the ETA on the fitted curve and past
 * the cliff, parallel workers as PostgreSQL plans them, and verdicts that
 * name the setting to change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "routing/build_plan.h"
#include "routing/indexdef.h"

static void power_fit_recovers_curve(void **state)
{
	(void)state;
	double n[3] = {5000, 10000, 20000}, t[3];
	for (int i = 0; i < 3; i++)
		t[i] = 2e-5 * pow(n[i], 1.3);
	struct bp_fit f;
	assert_int_equal(bp_fit(BP_POWER, n, t, 3, &f), 0);
	assert_true(fabs(f.b - 1.3) < 1e-9);
	assert_true(fabs(f.a - 2e-5) / 2e-5 < 1e-6);
	assert_true(f.r2 > 0.999999);
	double lo, hi, v = bp_predict(&f, 200000, &lo, &hi);
	assert_true(fabs(v - 2e-5 * pow(200000, 1.3)) / v < 1e-6);
	/* exact points: no spread measured, the band is the point */
	assert_true(lo <= v && hi >= v);
}

static void noisy_fit_band_widens_away(void **state)
{
	(void)state;
	double n[3] = {5000, 10000, 20000}, t[3] = {1.0, 2.6, 5.5};
	struct bp_fit f;
	assert_int_equal(bp_fit(BP_POWER, n, t, 3, &f), 0);
	assert_true(f.sigma > 0);
	double lo1, hi1, lo2, hi2;
	double near = bp_predict(&f, 20000, &lo1, &hi1), far = bp_predict(&f, 400000, &lo2, &hi2);
	assert_true(lo1 < near && near < hi1 && lo2 < far && far < hi2);
	assert_true(hi2 / far > hi1 / near); /* relative band wider far out */
}

static void linear_fit_and_two_points(void **state)
{
	(void)state;
	double n[2] = {1000, 3000}, t[2] = {2.0, 4.0};
	struct bp_fit f;
	assert_int_equal(bp_fit(BP_LINEAR, n, t, 2, &f), 0);
	assert_true(fabs(f.a - 1.0) < 1e-9 && fabs(f.b - 0.001) < 1e-12);
	double lo, hi, v = bp_predict(&f, 100000, &lo, &hi);
	assert_true(fabs(v - 101.0) < 1e-6);
	assert_true(fabs(lo - 0.75 * v) < 1e-6 && fabs(hi - 1.25 * v) < 1e-6);
	/* what cannot be fit */
	double same[2] = {1000, 1000}, neg[2] = {-1, 0};
	assert_int_equal(bp_fit(BP_LINEAR, same, t, 2, &f), -1);
	assert_int_equal(bp_fit(BP_POWER, n, neg, 2, &f), -1);
	assert_int_equal(bp_fit(BP_POWER, n, t, 1, &f), -1);
}

static void sample_sizes_and_memory(void **state)
{
	(void)state;
	double s[6];
	assert_int_equal(bp_sample_sizes(200000, 0.1, 2000, 3, s), 3);
	assert_true(s[0] == 5000 && s[1] == 10000 && s[2] == 20000);
	/* a small table: fewer distinct sizes, never past the table */
	assert_int_equal(bp_sample_sizes(3000, 0.1, 2000, 3, s), 1);
	assert_true(s[0] == 2000);
	assert_int_equal(bp_sample_sizes(1000, 0.1, 2000, 3, s), 1);
	assert_true(s[0] == 1000);
	assert_int_equal(bp_trial_mwm_kb(65536, 20000, 200000, 1024), 6554);
	assert_int_equal(bp_trial_mwm_kb(16384, 5000, 200000, 1024), 1024); /* floored */
}

static void cliff_notice(void **state)
{
	(void)state;
	long long n = 0;
	assert_true(bp_parse_cliff_notice("hnsw graph no longer fits into maintenance_work_mem after 52311 tuples", &n));
	assert_int_equal(n, 52311);
	assert_false(bp_parse_cliff_notice("index \"x\" does not exist, skipping", &n));
	assert_false(bp_parse_cliff_notice(NULL, &n));
	assert_non_null(strstr(bp_notice_advice("hnsw graph no longer fits into maintenance_work_mem after 1 tuples"),
	                       "maintenance_work_mem"));
	assert_null(bp_notice_advice("something else"));
}

static void eta_follows_curve(void **state)
{
	(void)state;
	/* b = 2: half the tuples take a quarter of the time; with no plan the
	 * rest takes 3x what passed, not 1x as a linear ETA says */
	struct bp_eta_in in = {.predicted_s = NAN, .exponent = 2, .elapsed_s = 10, .done = 50, .total = 100};
	assert_true(fabs(bp_eta(&in) - 30) < 1e-9);
	/* with the plan: early on it is the plan's word */
	struct bp_eta_in early = {.predicted_s = 100, .exponent = 1.2, .elapsed_s = 0, .done = 0, .total = 100};
	assert_true(fabs(bp_eta(&early) - 100) < 1e-9);
	/* done: nothing left */
	struct bp_eta_in end = {.predicted_s = 100, .exponent = 1.2, .elapsed_s = 90, .done = 100, .total = 100};
	assert_true(bp_eta(&end) < 1e-9);
	/* past the cliff, the rate since then carries the rest */
	struct bp_eta_in cliff = {.predicted_s = 100, .exponent = 1.2, .elapsed_s = 60, .done = 600, .total = 1000,
	                          .cliff_tuples = 500, .cliff_elapsed_s = 10};
	assert_true(fabs(bp_eta(&cliff) - 200) < 1e-9); /* 100 tuples in 50 s, 400 to go */
	struct bp_eta_in none = {.predicted_s = NAN, .exponent = 1, .elapsed_s = 1, .done = 0, .total = 0};
	assert_true(isnan(bp_eta(&none)));
}

static void workers_like_postgres(void **state)
{
	(void)state;
	/* 8 MB threshold = 1024 pages; 3x per more worker; 32 MB each */
	assert_int_equal(bp_parallel_workers(500, 2, 1048576, 1024, -1), 0);
	assert_int_equal(bp_parallel_workers(2000, 2, 1048576, 1024, -1), 1);
	assert_int_equal(bp_parallel_workers(10000, 2, 1048576, 1024, -1), 2);
	assert_int_equal(bp_parallel_workers(10000, 2, 65536, 1024, -1), 1);
	assert_int_equal(bp_parallel_workers(10000, 2, 16384, 1024, -1), 0);
	assert_int_equal(bp_parallel_workers(10, 4, 1048576, 1024, 3), 3);
}

static void verdicts_name_the_setting(void **state)
{
	(void)state;
	char why[600];
	struct bp_limits ok = {64e6, 10e6, false, NAN, 1e6, 0, 100};
	assert_false(bp_refuse(&ok, why, sizeof(why)));
	struct bp_limits mem = {64e6, 200e6, true, NAN, 1e6, 0, 100};
	assert_true(bp_refuse(&mem, why, sizeof(why)));
	assert_non_null(strstr(why, "maintenance_work_mem"));
	struct bp_limits disk = {64e6, 10e6, false, 1e6, 5e6, 0, 100};
	assert_true(bp_refuse(&disk, why, sizeof(why)));
	assert_non_null(strstr(why, "free_space"));
	struct bp_limits slow = {64e6, 10e6, false, NAN, 1e6, 60, 100};
	assert_true(bp_refuse(&slow, why, sizeof(why)));
	assert_non_null(strstr(why, "max_build_seconds"));
}

static void kmeans_memory(void **state)
{
	(void)state;
	/* lists 100, 128-d: room for 10000 samples of 520 bytes, bounds for
	 * each sample and center: pgvector asked 10 MB for it (9.2 MB + 1) */
	double b = bp_ivfflat_kmeans_bytes(100, 128, 1e6);
	assert_true(b > 9e6 && b < 10 * 1048576.0);
	/* 2000 rows: pgvector asked 6 MB */
	assert_true(bp_ivfflat_kmeans_bytes(100, 128, 2000) > 5 * 1048576.0 &&
	            bp_ivfflat_kmeans_bytes(100, 128, 2000) < 6 * 1048576.0);
	/* fewer rows than samples: the rows */
	assert_true(bp_ivfflat_kmeans_bytes(100, 128, 1000) < b);
}

static void retarget_definition(void **state)
{
	(void)state;
	char out[512];
	assert_int_equal(indexdef_retarget("CREATE INDEX CONCURRENTLY items_idx_vg1 ON public.items USING hnsw "
	                                   "(embedding vector_l2_ops) WITH (m='16')",
	                                   "vecgate.plan_1_1_sample", "plan_1_1_index", out, sizeof(out)),
	                 0);
	assert_string_equal(out, "CREATE INDEX plan_1_1_index ON vecgate.plan_1_1_sample USING hnsw (embedding "
	                         "vector_l2_ops) WITH (m='16')");
	assert_int_equal(indexdef_retarget("CREATE INDEX x ON ONLY t", "s", "i", out, sizeof(out)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(power_fit_recovers_curve), cmocka_unit_test(noisy_fit_band_widens_away),
		cmocka_unit_test(linear_fit_and_two_points), cmocka_unit_test(sample_sizes_and_memory),
		cmocka_unit_test(cliff_notice),             cmocka_unit_test(eta_follows_curve),
		cmocka_unit_test(workers_like_postgres),    cmocka_unit_test(verdicts_name_the_setting),
		cmocka_unit_test(kmeans_memory),            cmocka_unit_test(retarget_definition),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
