{{/* Name of the bundled Redis (StatefulSet, Service, Secret). */}}
{{- define "ec2-terminal.redis.fullname" -}}
{{- printf "%s-redis" (include "ec2-terminal.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret holding the Redis password (key `password`), or "" for none. */}}
{{- define "ec2-terminal.redis.secretName" -}}
{{- if .Values.redis.externalUrl -}}
{{- .Values.redis.existingSecret -}}
{{- else -}}
{{- default (include "ec2-terminal.redis.fullname" .) .Values.redis.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The Redis URL the worker and the CronJob use (no password in it). */}}
{{- define "ec2-terminal.redis.url" -}}
{{- if .Values.redis.externalUrl -}}
{{- .Values.redis.externalUrl -}}
{{- else -}}
{{- printf "redis://%s.%s.svc:6379/0" (include "ec2-terminal.redis.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Where the Redis password file is mounted in the worker and the CronJob's pods. */}}
{{- define "ec2-terminal.redis.passwordDir" -}}
/var/run/secrets/ec2-terminal/redis
{{- end -}}

{{/* ServiceAccount names of the worker and of the CronJob. */}}
{{- define "ec2-terminal.hc.workerAccount" -}}
{{- printf "%s-health-worker" (include "ec2-terminal.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "ec2-terminal.hc.enqueueAccount" -}}
{{- printf "%s-health-enqueue" (include "ec2-terminal.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* EC2_TERMINAL_* settings shared by the worker and the CronJob. */}}
{{- define "ec2-terminal.hc.env" -}}
{{- $hc := .Values.healthCheck -}}
- name: EC2_TERMINAL_REDIS_URL
  value: {{ include "ec2-terminal.redis.url" . | quote }}
{{- if include "ec2-terminal.redis.secretName" . }}
- name: EC2_TERMINAL_REDIS_PASSWORD_FILE
  value: {{ include "ec2-terminal.redis.passwordDir" . }}/password
{{- end }}
- name: EC2_TERMINAL_HEALTH_CONNECT_TIMEOUT
  value: {{ $hc.connectTimeout | quote }}
- name: EC2_TERMINAL_HEALTH_BANNER_TIMEOUT
  value: {{ $hc.bannerTimeout | quote }}
- name: EC2_TERMINAL_HEALTH_HTTP_TIMEOUT
  value: {{ $hc.httpTimeout | quote }}
- name: EC2_TERMINAL_HEALTH_AWS_TIMEOUT
  value: {{ $hc.awsTimeout | quote }}
- name: EC2_TERMINAL_HEALTH_SOFT_TIME_LIMIT
  value: {{ $hc.softTimeLimit | quote }}
- name: EC2_TERMINAL_HEALTH_TIME_LIMIT
  value: {{ $hc.timeLimit | quote }}
- name: EC2_TERMINAL_HEALTH_VISIBILITY_TIMEOUT
  value: {{ $hc.visibilityTimeout | quote }}
- name: EC2_TERMINAL_HEALTH_CHECK_EXPIRES
  value: {{ $hc.checkExpires | quote }}
- name: EC2_TERMINAL_ADDRESS
  value: {{ $hc.address | quote }}
{{- end -}}

{{/* The Redis password volume and its mount, when there is a password. */}}
{{- define "ec2-terminal.hc.passwordVolume" -}}
{{- if include "ec2-terminal.redis.secretName" . }}
- name: redis-password
  secret:
    secretName: {{ include "ec2-terminal.redis.secretName" . }}
    defaultMode: 0440
    items:
      - key: password
        path: password
{{- end }}
{{- end -}}
{{- define "ec2-terminal.hc.passwordMount" -}}
{{- if include "ec2-terminal.redis.secretName" . }}
- name: redis-password
  mountPath: {{ include "ec2-terminal.redis.passwordDir" . }}
  readOnly: true
{{- end }}
{{- end -}}
