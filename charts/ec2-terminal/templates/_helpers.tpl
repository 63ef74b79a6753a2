{{/* Full name of the release's objects. */}}
{{- define "ec2-terminal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels selecting one component's pods: (dict "root" $ "component" "operator"). */}}
{{- define "ec2-terminal.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object of the chart (and its pods): (dict "root" $ "component" "operator"). */}}
{{- define "ec2-terminal.labels" -}}
{{ include "ec2-terminal.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ec2-terminal
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "ec2-terminal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ec2-terminal.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The project's image reference, the tag defaulting to appVersion. */}}
{{- define "ec2-terminal.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The pod-level security context of the project's pods (restricted Pod Security Standard). */}}
{{- define "ec2-terminal.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The restricted container security context every container of the chart uses. */}}
{{- define "ec2-terminal.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The namespaces watched when not cluster-wide. */}}
{{- define "ec2-terminal.watchedNamespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- toJson .Values.watch.namespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/*
The networkPolicy values as JSON for the operator: the worker's namespace defaulted, the
scrapers (metricsFrom, the bundled Prometheus) allowed in, the bundled collector allowed out.
metricsFrom is the chart's, not the operator's.
*/}}
{{- define "ec2-terminal.networkPolicy" -}}
{{- $np := deepCopy .Values.networkPolicy -}}
{{- if not $np.healthCheckNamespaceSelector -}}
{{- $_ := set $np "healthCheckNamespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .Release.Namespace)) -}}
{{- end -}}
{{- $from := concat $np.extraIngressFrom (include "ec2-terminal.metricsPeers" . | fromJsonArray) -}}
{{- $_ := set $np "extraIngressFrom" (default (list) $from) -}}
{{- $_ = unset $np "metricsFrom" -}}
{{- $collector := include "ec2-terminal.collectorEgress" . | fromJson -}}
{{- if $collector -}}
{{- $_ = set $np.egress "extraTo" (append $np.egress.extraTo $collector) -}}
{{- end -}}
{{- toJson $np -}}
{{- end -}}

{{/*
Rules for managing sessions, granted cluster-wide or per watched namespace.
Secrets: get (credentials check, token), create/patch/delete (the token Secret; patch for
rotation) - never list or watch, so the operator cannot enumerate a namespace's Secrets.
Leases get/update/patch: needed to grant exactly that (on its own Lease) to each session's
Role, since RBAC refuses to grant what the granter lacks. Pods are never patched: a session
pod has no token that could change a Pod.
*/}}
{{- define "ec2-terminal.sessionRules" -}}
- apiGroups: ["ec2-terminal.io"]
  resources: ["terminalsessions"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["ec2-terminal.io"]
  resources: ["terminalsessions/status"]
  verbs: ["get", "patch"]
- apiGroups: ["ec2-terminal.io"]
  resources: ["terminalsessions/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Namespace of `helm test`'s sample session: the value, else a watched one (the release's if watched). */}}
{{- define "ec2-terminal.tests.namespace" -}}
{{- $watched := include "ec2-terminal.watchedNamespaces" . | fromJsonArray -}}
{{- if .Values.tests.session.namespace -}}
{{- .Values.tests.session.namespace -}}
{{- else if or .Values.watch.allNamespaces (has .Release.Namespace $watched) -}}
{{- .Release.Namespace -}}
{{- else -}}
{{- first $watched -}}
{{- end -}}
{{- end -}}
