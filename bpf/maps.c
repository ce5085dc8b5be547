/* Every pinned map the program sets share, and no program: compiled once
 * before the sets are compiled side by side (reconciler/datapath/loader.py),
 * so each of them opens the maps made here instead of racing the others to
 * create and pin them. Only the headers that declare maps are included, not
 * the datapath's code: a set's build waits for this compile.
 * tests/unit/test_bpf_maps.py checks that every map is declared in them. */
#include "lib/nat_maps.h"
#include "lib/policy_maps.h"
#include "lib/tc_maps.h"
