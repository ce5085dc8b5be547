/* Connect-time load balancing (cgroup/sock_addr hooks), the socket-level half of
 * the kube-proxy replacement: a socket that connects or sends to a service VIP
 * is pointed straight at a backend, so its packets never need NAT in tc.
 *
 * Load with expected attach types: rcl_connect4 = CGROUP_INET4_CONNECT,
 * rcl_sendmsg4 = CGROUP_UDP4_SENDMSG, rcl_recvmsg4 = CGROUP_UDP4_RECVMSG.
 * Return 1 lets the call proceed; 0 makes connect()/sendmsg() fail with EPERM,
 * which is how a frontend with no usable backend is rejected.
 * Affinity is keyed by client 0 (the node): the source address of a socket is
 * usually not chosen yet at connect time. Which sockets are balanced: see
 * rcl_ctlb. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/in.h>
#include "lib/nat.h"

/* bcc 0.26 may lack this helper's declaration; the kernel's signature. */
static __u64 (*rcl_get_netns_cookie)(void *ctx) = (void *)BPF_FUNC_get_netns_cookie;

/* Is the socket the node's own, and are those balanced whatever the mode
 * (RCL_CTLB_HOST, its network namespace host_netns)? */
static __always_inline int rcl_ctlb_host(struct bpf_sock_addr *ctx,
					 const struct rcl_nat_globals *g)
{
	if (!g || !(g->flags & RCL_CTLB_HOST))
		return 0;
	return (__u32)rcl_get_netns_cookie(ctx) == g->host_netns;
}

/* 1 = allow (maybe rewritten), 0 = reject. Balanced: TCP unless the mode
 * is DISABLED, UDP in mode ALL, and both for the node's own sockets when
 * RCL_CTLB_HOST says so. */
static __always_inline int rcl_ctlb(struct bpf_sock_addr *ctx, int record_udp)
{
	__u32 zero = 0;
	struct rcl_nat_globals *g = rcl_nat_globals.lookup(&zero);
	__u32 mode = g ? (g->flags & RCL_CTLB_MASK) : RCL_CTLB_TCP;
	__u8 proto = ctx->protocol;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 1;
	int covered = mode == RCL_CTLB_ALL || (mode == RCL_CTLB_TCP && proto == IPPROTO_TCP);
	if (!covered && !rcl_ctlb_host(ctx, g))
		return 1;

	struct rcl_nat_fe_key fek = {};
	fek.vip = ctx->user_ip4;
	fek.port = (__u16)ctx->user_port; /* network order in the low 16 bits */
	fek.proto = proto;
	struct rcl_nat_fe_val *fe = rcl_nat_fe.lookup(&fek);
	if (!fe)
		return 1;
	/* A load balancer IP with source ranges is judged on the packet's
	 * source, which a socket may not have chosen yet: left to the tc path
	 * (a pod's packets) or to the network (the node's own). */
	if (fe->flags & RCL_FE_SRC_RANGES)
		return 1;

	__u64 now = rcl_now();
	struct rcl_nat_pick pick = {};
	if (rcl_nat_pick_backend(fe, 0, now, bpf_get_prandom_u32(), 1, &pick) != RCL_PICK_OK) {
		rcl_nat_count(RCL_NS_CTLB_REJECT);
		return 0;
	}
	if (proto == IPPROTO_UDP && record_udp) {
		struct rcl_ctlb_rev_key rk = {};
		struct rcl_ctlb_rev_val rv = {};
		rk.cookie = bpf_get_socket_cookie(ctx);
		rk.be_ip = pick.ip;
		rk.be_port = pick.port;
		rv.ts_ns = now;
		rv.vip = fek.vip;
		rv.vport = fek.port;
		rcl_ctlb_udp_rev.update(&rk, &rv);
	}
	ctx->user_ip4 = pick.ip;
	ctx->user_port = pick.port;
	rcl_nat_count(proto == IPPROTO_TCP ? RCL_NS_CTLB_TCP : RCL_NS_CTLB_UDP);
	return 1;
}

int rcl_connect4(struct bpf_sock_addr *ctx)
{
	/* connected UDP sockets are balanced here and read replies via recvmsg4 */
	return rcl_ctlb(ctx, 1);
}

int rcl_sendmsg4(struct bpf_sock_addr *ctx)
{
	return rcl_ctlb(ctx, 1);
}

int rcl_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct rcl_ctlb_rev_key rk = {};
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.be_ip = ctx->user_ip4;
	rk.be_port = (__u16)ctx->user_port;
	struct rcl_ctlb_rev_val *rv = rcl_ctlb_udp_rev.lookup(&rk);
	if (rv) {
		ctx->user_ip4 = rv->vip;
		ctx->user_port = rv->vport;
		rcl_nat_count(RCL_NS_CTLB_UDP_REV);
	}
	return 1; /* recvmsg hooks must allow */
}
