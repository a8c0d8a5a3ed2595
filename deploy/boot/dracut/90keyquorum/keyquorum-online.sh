#!/bin/sh
# dracut initqueue/online hook (initrd without systemd): once an interface
# is up, open every volume of /etc/keyquorum/volumes that is not open yet
# with its key from the keyquorum cluster. Volumes that fail are left to
# dracut's passphrase prompt.

type warn >/dev/null 2>&1 || . /lib/dracut-lib.sh

[ -f /etc/keyquorum/volumes ] || exit 0

while read -r name dev key opts; do
	case $name in "" | "#"*) continue ;; esac
	if ! /usr/lib/keyquorum/unlock-volume "$name" </dev/null; then
		warn "keyquorum: could not unlock $name; falling back to the passphrase"
	fi
done </etc/keyquorum/volumes
