{{/* Full name of the release's objects. */}}
{{- define "ec2-terminal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels selecting the operator pod. */}}
{{- define "ec2-terminal.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every object of the chart. */}}
{{- define "ec2-terminal.labels" -}}
{{ include "ec2-terminal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "ec2-terminal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ec2-terminal.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference from {repository, tag}, defaulting the tag to appVersion. */}}
{{- define "ec2-terminal.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The namespaces watched when not cluster-wide. */}}
{{- define "ec2-terminal.watchedNamespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- toJson .Values.watch.namespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* The networkPolicy values as JSON for the operator, the worker's namespace defaulted. */}}
{{- define "ec2-terminal.networkPolicy" -}}
{{- $np := deepCopy .Values.networkPolicy -}}
{{- if not $np.healthCheckNamespaceSelector -}}
{{- $_ := set $np "healthCheckNamespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .Release.Namespace)) -}}
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
