/* For the cmocka tests of memory release: whether the page holding p is
 * resident (mincore). Include after <cmocka.h>. */
#ifndef POSTERN_TEST_RESIDENT_H
#define POSTERN_TEST_RESIDENT_H

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static int
resident(const void *p)
{
	long page = sysconf(_SC_PAGESIZE);
	void *start = (void *)((uintptr_t)p & ~(uintptr_t)(page - 1));
	unsigned char vec = 0;

	assert_int_equal(mincore(start, (size_t)page, &vec), 0);
	return vec & 1;
}

#endif
