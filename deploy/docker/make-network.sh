#!/bin/sh
# Create the 4-node customs network for compose.yaml in deploy/docker/network/.
#
# `jangbu network init` writes 127.0.0.1 addresses; inside compose each node is reached by
# its service name, and listens on 0.0.0.0 in its own container. The rewrite is the same
# on every copy of genesis.json, so all nodes still agree on the genesis hash.
#
# Usage (from anywhere): deploy/docker/make-network.sh [--force]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/network"
jangbu=${JANGBU:-jangbu}

"$jangbu" network init --preset customs --dir "$out" --base-port 26600 ${1:-}

i=0
for org in customs seller courier buyer; do
    p2p=$((26600 + 2 * i)); api=$((p2p + 1))
    for g in "$out/genesis.json" "$out"/*/genesis.json; do
        sed -i -e "s#\"127\.0\.0\.1:$p2p\"#\"$org:$p2p\"#" \
               -e "s#http://127\.0\.0\.1:$api\"#http://$org:$api\"#" "$g"
    done
    # config: listen on every interface of the container.
    sed -i -e "s#listen = \"127\.0\.0\.1:#listen = \"0.0.0.0:#" "$out/$org/config.toml"
    i=$((i + 1))
done

# The containers run as your user so they can read the 0600 key files written above.
printf 'JANGBU_UID=%s\nJANGBU_GID=%s\n' "$(id -u)" "$(id -g)" > "$here/.env"

sha256sum "$out/genesis.json" "$out"/*/genesis.json
echo "network written to $out; now: docker compose -f $here/compose.yaml up -d"
