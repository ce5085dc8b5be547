/* Every pinned map the program sets share, and no program: compiled once
 * before the sets are compiled side by side (reconciler/datapath/loader.py),
 * so each of them opens the maps made here instead of racing the others to
 * create and pin them. The sets' own headers define the maps. */
#include "lib/tc_path.h"
