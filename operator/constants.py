"""Names shared by the operator's modules: the API group, labels and annotations."""

GROUP = "ws2kafka.dev"
VERSION = "v1alpha1"
PLURAL = "websocketsources"
KIND = "WebSocketSource"
API_VERSION = f"{GROUP}/{VERSION}"

#: Labels on every child object, to find them and to select the bridge pods.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "ws2kafka"
#: ``app.kubernetes.io/managed-by`` of the children: how the operator watches its Deployments.
MANAGED_BY = "ws2kafka-operator"

#: Pod-template annotation with the hash of the rendered config: a spec change rolls the pod.
ANNOTATION_SPEC_HASH = f"{GROUP}/spec-hash"
#: Source annotation: the hash of every child of the source as last applied. An operator
#: that resumes (a restart) applies nothing where it would apply the same children again.
ANNOTATION_CHILDREN_HASH = f"{GROUP}/children-hash"
#: Set to "true" on a source: the operator leaves its bridge as it is (spec changes wait).
ANNOTATION_PAUSE = f"{GROUP}/pause-reconciliation"
#: Set (any value) on a source: its bridge is restarted once, then the annotation removed.
ANNOTATION_RESTART = f"{GROUP}/restart"
#: Pod-template annotation a restart sets to its time: rolls the pod (as ``kubectl rollout
#: restart`` does), under a field manager of its own so the operator's apply keeps it.
ANNOTATION_RESTARTED_AT = f"{GROUP}/restarted-at"
#: kopf's own bookkeeping goes into annotations with this prefix, never into status.
KOPF_PREFIX = GROUP
FINALIZER = f"{GROUP}/finalizer"

#: Where the bridge pod finds its config (the port of /metrics, /healthz and /readyz is
#: spec.template.container.metricsPort, default bridge.podtemplate.DEFAULT_METRICS_PORT).
CONFIG_DIR = "/etc/ws2kafka"
CONFIG_FILE = "source.yaml"
#: Where the bridge pod finds the TLS keys its source references (spec.tls.ca, clientCert,
#: clientKey): one projected volume of those Secret and ConfigMap keys.
TLS_DIR = "/etc/ws2kafka-tls"
#: Where a bridge pod mounts the Secret keys its spec references, a file each.
SECRETS_DIR = "/etc/ws2kafka-secrets"

#: Handler ids (they name kopf's progress annotations).
HANDLER_RECONCILE = "reconcile"
HANDLER_CONDITIONS = "conditions"
HANDLER_INLINE = "inline-bridge"
HANDLER_EVENTS = "every-event"
