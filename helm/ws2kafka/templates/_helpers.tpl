{{/*
Names, labels and the operator's RBAC rules, shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "ws2kafka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the operator's objects: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". Truncated to 63 characters (DNS labels).
*/}}
{{- define "ws2kafka.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "ws2kafka.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the operator pod; they never change after the first install. */}}
{{- define "ws2kafka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ws2kafka.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The labels of every object the chart creates. */}}
{{- define "ws2kafka.labels" -}}
helm.sh/chart: {{ include "ws2kafka.chart" . }}
{{ include "ws2kafka.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ws2kafka
{{- end }}

{{/* The labels the operator puts on every bridge pod (operator/resources.py `labels`). */}}
{{- define "ws2kafka.bridgeSelectorLabels" -}}
app.kubernetes.io/name: ws2kafka
app.kubernetes.io/component: bridge
app.kubernetes.io/managed-by: ws2kafka-operator
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "ws2kafka.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ws2kafka.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image of the operator: repository@digest when a digest is set, else repository:tag. */}}
{{- define "ws2kafka.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The image of bridge pods: bridge.image, else the operator's (one image runs both). */}}
{{- define "ws2kafka.bridgeImage" -}}
{{- default (include "ws2kafka.image" .) .Values.bridge.image }}
{{- end }}

{{/*
Validates the combination of values that the schema cannot express, and fails with the fix.
*/}}
{{- define "ws2kafka.validate" -}}
{{- if and (eq .Values.rbac.scope "namespaced") (not .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaced needs the namespaces to watch: set watchNamespaces" }}
{{- end }}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- range .Values.watchNamespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "watchNamespaces: %q is not a namespace name; patterns need rbac.scope=cluster" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.leaderElection }}
{{- if not (and (gt (float64 .leaseDurationSeconds) (float64 .renewDeadlineSeconds)) (gt (float64 .renewDeadlineSeconds) (float64 .retryPeriodSeconds))) }}
{{- fail "leaderElection: leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds is needed" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Several replicas elect a leader on a Lease (WS2KAFKA_OPERATOR_LEADER_ELECTION); one acts.
*/}}
{{- define "ws2kafka.elected" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/*
The rules the operator needs in every namespace it watches. Children (Deployment, ConfigMap,
ServiceAccount, Role, RoleBinding) are written with server-side apply. The bridge Role it
creates grants get/patch on websocketsources/status, so the operator holds those verbs itself:
the API server refuses to let anyone grant what they do not hold.
*/}}
{{- define "ws2kafka.namespacedRules" -}}
- apiGroups: ["ws2kafka.dev"]
  resources: ["websocketsources"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["ws2kafka.dev"]
  resources: ["websocketsources/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if eq .Values.operator.mode "pod" }}
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments/status"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
{{- else }}
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/*
What kopf reads at cluster level, in both scopes: CRDs (it discovers the resource and notices
CRD changes) and namespaces. kopf lists and watches namespaces whenever it is given some, even
exact names; without the permission it retries for about a minute before it starts.
*/}}
{{- define "ws2kafka.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
The operator's bridge pod settings (WS2KAFKA_OPERATOR_BRIDGE_POD), as JSON: pull secrets by
name, scheduling as in a PodSpec.
*/}}
{{- define "ws2kafka.bridgePod" -}}
{{- $secrets := list -}}
{{- range .Values.bridge.imagePullSecrets }}{{ $secrets = append $secrets .name }}{{ end -}}
{{- $pod := dict "imagePullSecrets" $secrets "nodeSelector" .Values.bridge.nodeSelector "tolerations" .Values.bridge.tolerations "affinity" .Values.bridge.affinity "priorityClassName" .Values.bridge.priorityClassName -}}
{{- toJson $pod -}}
{{- end }}

{{/*
The chart-wide bridge template (operator setting bridge_template, JSON): bridge.template, with
the API server address of kubernetesService first in container.env, so bridge pods reach the
API server the way the operator does.
*/}}
{{- define "ws2kafka.bridgeTemplate" -}}
{{- $template := deepCopy (.Values.bridge.template | default dict) -}}
{{- with .Values.kubernetesService.host }}
{{- $container := get $template "container" | default dict -}}
{{- $api := list (dict "name" "KUBERNETES_SERVICE_HOST" "value" .) (dict "name" "KUBERNETES_SERVICE_PORT" "value" (toString $.Values.kubernetesService.port)) -}}
{{- $_ := set $container "env" (concat $api (get $container "env" | default list)) -}}
{{- $_ := set $template "container" $container -}}
{{- end -}}
{{- toJson $template -}}
{{- end }}
