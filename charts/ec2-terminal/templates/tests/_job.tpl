{{/*
A test hook Job running one check of files/helm_test.py in the project's image:
(dict "root" $ "check" "operator" "env" (list ...) "token" false "weight" "0" "deadline" 120).
A Job rather than a bare Pod, so a kubelet-less test cluster (kwok) finishes it too.
*/}}
{{- define "ec2-terminal.tests.job" -}}
{{- $root := .root }}
{{- $ctx := dict "root" $root "component" "test" }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "ec2-terminal.fullname" $root }}-test-{{ .check }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ec2-terminal.labels" $ctx | nindent 4 }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: 0
  activeDeadlineSeconds: {{ .deadline }}
  template:
    metadata:
      labels:
        {{- include "ec2-terminal.labels" $ctx | nindent 8 }}
    spec:
      serviceAccountName: {{ include "ec2-terminal.fullname" $root }}-test
      automountServiceAccountToken: {{ .token }}
      restartPolicy: Never
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "ec2-terminal.podSecurity" $root | nindent 8 }}
      containers:
        - name: {{ .check }}
          image: {{ include "ec2-terminal.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["python3", "/opt/ec2-terminal-test/helm_test.py", {{ .check | quote }}]
          env:
            {{- toYaml .env | nindent 12 }}
          resources:
            {{- toYaml $root.Values.tests.resources | nindent 12 }}
          securityContext:
            {{- include "ec2-terminal.containerSecurity" $root | nindent 12 }}
          volumeMounts:
            - name: script
              mountPath: /opt/ec2-terminal-test
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: script
          configMap:
            name: {{ include "ec2-terminal.fullname" $root }}-test
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
{{- end -}}
