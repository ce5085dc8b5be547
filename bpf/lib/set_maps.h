/* Maps of a program set's own (not shared with other sets): its tail-call
 * table, per-CPU scratch carried across its tail calls, and the like.
 *
 * The loader may compile one set in parts, side by side, each part holding
 * some of the set's programs (reconciler/datapath/loader.py). Every part
 * must then reach the same maps, so with RCL_SET_DIR (the build's directory)
 * such a map is pinned there: the first compile creates it, the parts open
 * it. Without RCL_SET_DIR (a test's or a bench's own compile) it is the
 * compile's own. */
#ifndef RCL_SET_MAPS_H
#define RCL_SET_MAPS_H

#ifdef RCL_SET_DIR
#define RCL_SET_MAP(type, key, value, name, entries) \
	BPF_TABLE_PINNED(type, key, value, name, entries, RCL_SET_DIR "/" #name)
#else
#define RCL_SET_MAP(type, key, value, name, entries) \
	BPF_TABLE(type, key, value, name, entries)
#endif

#endif
