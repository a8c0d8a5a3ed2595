#!/bin/bash
# dracut module 90keyquorum: unlock LUKS volumes in the initrd with keys
# from a keyquorum cluster. Install this directory as
# /usr/lib/dracut/modules.d/90keyquorum and run dracut -f.
#
# The volumes are those of /etc/keyquorum/volumes (see unlock-volume);
# name the root volume as dracut's crypt module does, luks-UUID. With
# systemd in the initrd, keyquorum-unlock@NAME.service runs for each of
# them before systemd-cryptsetup@NAME.service; without systemd, the
# initqueue/online hook keyquorum-online.sh opens them once the network is
# up. Either way a passphrase prompt remains the fallback.

check() {
	require_binaries keyagent cryptsetup || return 1
	[ -f /etc/keyquorum/agent.json ] && [ -f /etc/keyquorum/volumes ] || return 255
	return 0
}

depends() {
	echo network crypt
	return 0
}

cmdline() {
	echo "rd.neednet=1"
}

install() {
	inst_binary "$(command -v keyagent)" /usr/sbin/keyagent
	inst_multiple cryptsetup sleep sed grep
	inst_script /usr/lib/keyquorum/unlock-volume /usr/lib/keyquorum/unlock-volume
	# The clevis pin, for volumes bound with clevis luks bind ... keyquorum
	# (dracut's clevis module brings clevis and jose).
	if [ -x /usr/bin/clevis-decrypt-keyquorum ]; then
		inst_script /usr/bin/clevis-decrypt-keyquorum /usr/bin/clevis-decrypt-keyquorum
	fi

	if ! grep -q '"cluster_public_key"' /etc/keyquorum/agent.json; then
		dwarn "keyquorum: /etc/keyquorum/agent.json pins no cluster public key, so keyagent will refuse to run: keyagent enroll --cluster-key HEX --cluster-id ID (keyctl cluster pin prints them)"
	fi
	# The config (with the cluster pin), the CA, the machine key and the volume list. dracut
	# writes the initrd mode 0600; the directory stays owner-only.
	local f
	for f in /etc/keyquorum/*; do
		[ -f "$f" ] && inst_simple "$f"
	done
	chmod 0700 "${initdir}/etc/keyquorum"
	for f in /etc/nsswitch.conf /etc/hosts; do
		[ -f "$f" ] && inst_simple "$f"
	done

	# The network is needed even when the root file system is local.
	mkdir -p "${initdir}/etc/cmdline.d"
	echo "rd.neednet=1" >"${initdir}/etc/cmdline.d/90keyquorum.conf"

	if dracut_module_included "systemd"; then
		local unit
		for unit in /etc/systemd/system/keyquorum-unlock@.service "${systemdsystemunitdir}/keyquorum-unlock@.service"; do
			[ -f "$unit" ] && break
		done
		inst_simple "$unit" "${systemdsystemunitdir}/keyquorum-unlock@.service"
		mkdir -p "${initdir}${systemdsystemunitdir}/cryptsetup.target.wants"
		local name dev key opts
		while read -r name dev key opts; do
			case $name in "" | "#"*) continue ;; esac
			ln_r "${systemdsystemunitdir}/keyquorum-unlock@.service" \
				"${systemdsystemunitdir}/cryptsetup.target.wants/keyquorum-unlock@$(systemd-escape "$name").service"
		done </etc/keyquorum/volumes
	else
		inst_hook initqueue/online 90 "$moddir/keyquorum-online.sh"
	fi
}
