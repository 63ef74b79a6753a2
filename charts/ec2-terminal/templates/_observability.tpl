{{/* Namespace of the bundled observability stack. */}}
{{- define "ec2-terminal.obs.namespace" -}}
{{- default .Release.Namespace .Values.observability.namespace -}}
{{- end -}}

{{/* Where ec2-terminal's processes send OTLP: the value, else the bundled collector, else "". */}}
{{- define "ec2-terminal.obs.otlpEndpoint" -}}
{{- if .Values.observability.otlpEndpoint -}}
{{- .Values.observability.otlpEndpoint -}}
{{- else if .Values.observability.enabled -}}
{{- printf "http://otel-collector.%s.svc:4317" (include "ec2-terminal.obs.namespace" .) -}}
{{- end -}}
{{- end -}}

{{/*
The OpenTelemetry variables of one process, as a JSON object (empty without an endpoint):
(dict "root" $ "service" "ec2-terminal-operator"). The same set hack/otel/stack.py gives the
demo, so whatever app/telemetry.py reads works in both.
*/}}
{{- define "ec2-terminal.obs.otelEnv" -}}
{{- $endpoint := include "ec2-terminal.obs.otlpEndpoint" .root -}}
{{- $env := dict -}}
{{- if $endpoint -}}
{{- $env = dict
  "ENABLE_OTEL" "true"
  "OTEL_EXPORTER_OTLP_ENDPOINT" $endpoint
  "OTEL_EXPORTER_OTLP_PROTOCOL" "grpc"
  "OTEL_EXPORTER_OTLP_INSECURE" (hasPrefix "http://" $endpoint | toString)
  "OTEL_TRACES_EXPORTER" "otlp"
  "OTEL_SERVICE_NAME" .service -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/*
The pod's identity from the downward API, as env entries: app/telemetry turns them into the
k8s.pod.name, k8s.namespace.name, k8s.pod.uid and k8s.node.name attributes of its traces.
*/}}
{{- define "ec2-terminal.obs.podIdentityEnv" -}}
- name: EC2_TERMINAL_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: EC2_TERMINAL_POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: EC2_TERMINAL_POD_UID
  valueFrom:
    fieldRef:
      fieldPath: metadata.uid
- name: EC2_TERMINAL_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end -}}

{{/* The OpenTelemetry variables as a container's env entries (nothing without an endpoint). */}}
{{- define "ec2-terminal.obs.otelEnvList" -}}
{{- range $name, $value := include "ec2-terminal.obs.otelEnv" . | fromJson }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The session pods' extra variables (EC2_TERMINAL_OPERATOR_SESSION_ENV), as JSON. */}}
{{- define "ec2-terminal.sessionEnv" -}}
{{- $otel := include "ec2-terminal.obs.otelEnv" (dict "root" . "service" "ec2-terminal-session") | fromJson -}}
{{- $f := .Values.session.features -}}
{{- $features := dict
  "EC2_TERMINAL_CLIPBOARD_OSC52" (ternary "on" "off" $f.clipboardOsc52)
  "EC2_TERMINAL_MAX_VIEWERS" ($f.maxViewers | int64 | toString)
  "EC2_TERMINAL_MAX_UPLOAD_BYTES" ($f.maxUploadBytes | int64 | toString)
  "EC2_TERMINAL_MAX_DOWNLOAD_BYTES" ($f.maxDownloadBytes | int64 | toString)
  "EC2_TERMINAL_MAX_RECORDING_BYTES" ($f.maxRecordingBytes | int64 | toString) -}}
{{- toJson (merge (deepCopy .Values.session.env) $otel $features) -}}
{{- end -}}

{{/* The session pods' extra annotations (EC2_TERMINAL_OPERATOR_SESSION_POD_ANNOTATIONS), as JSON. */}}
{{- define "ec2-terminal.sessionPodAnnotations" -}}
{{- $annotations := deepCopy .Values.session.podAnnotations -}}
{{- if .Values.observability.enabled -}}
{{- $annotations = merge $annotations (dict "prometheus.io/scrape" "true" "prometheus.io/port" "8000" "prometheus.io/path" "/metrics") -}}
{{- end -}}
{{- toJson $annotations -}}
{{- end -}}

{{/* The NetworkPolicy peers allowed to scrape /metrics: networkPolicy.metricsFrom and the bundled Prometheus. */}}
{{- define "ec2-terminal.metricsPeers" -}}
{{- $peers := list -}}
{{- range .Values.networkPolicy.metricsFrom -}}
{{- $peers = append $peers . -}}
{{- end -}}
{{- if .Values.observability.enabled -}}
{{- $peers = append $peers (dict
  "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" (include "ec2-terminal.obs.namespace" .)))
  "podSelector" (dict "matchLabels" (dict "app.kubernetes.io/name" "prometheus"))) -}}
{{- end -}}
{{- toJson $peers -}}
{{- end -}}

{{/* The egress rule to the bundled collector's OTLP ports, as JSON (null when not bundled). */}}
{{- define "ec2-terminal.collectorEgress" -}}
{{- if and .Values.observability.enabled (not .Values.observability.otlpEndpoint) -}}
{{- toJson (dict
  "to" (list (dict
    "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" (include "ec2-terminal.obs.namespace" .)))
    "podSelector" (dict "matchLabels" (dict "app.kubernetes.io/name" "otel-collector"))))
  "ports" (list (dict "port" 4317 "protocol" "TCP") (dict "port" 4318 "protocol" "TCP"))) -}}
{{- else -}}
null
{{- end -}}
{{- end -}}
