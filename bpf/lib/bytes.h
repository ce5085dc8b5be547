/* Byte order and link-layer helpers shared by the tc sources: one owner. */
#ifndef RCL_BYTES_H
#define RCL_BYTES_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define rcl_htons(x) ((__u16)__builtin_bswap16((__u16)(x)))
#else
#define rcl_htons(x) ((__u16)(x))
#endif

/* Write back the packet's link-layer addresses `macs` (as read from offset
 * 0: destination, then source) swapped, for a packet sent back out of the
 * interface it came in on. A permutation of whole 16-bit words: the
 * checksum the kernel may hold for the packet does not change. 0 or a
 * negative error. */
static __always_inline long rcl_swap_macs(struct __sk_buff *skb, const __u8 *macs)
{
	__u8 swapped[2 * ETH_ALEN];
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		swapped[i] = macs[ETH_ALEN + i];
		swapped[ETH_ALEN + i] = macs[i];
	}
	return bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), BPF_F_RECOMPUTE_CSUM);
}

#endif
