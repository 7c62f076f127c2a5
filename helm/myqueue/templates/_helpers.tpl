{{/*
Names, labels, images and the pieces every pod shares (security contexts, the /tmp volume, the
DSN env). Every object name is built here, so templates and NOTES.txt agree on them.
*/}}

{{- define "myqueue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "myqueue.fullname" -}}
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

{{/* Component object names (suffixes fit in 63 characters: the prefix is cut to 40). */}}
{{- define "myqueue.prefix" -}}
{{- include "myqueue.fullname" . | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- define "myqueue.operator.name" -}}{{ include "myqueue.prefix" . }}-operator{{- end }}
{{- define "myqueue.primary.name" -}}{{ include "myqueue.prefix" . }}-primary{{- end }}
{{- define "myqueue.replica.name" -}}{{ include "myqueue.prefix" . }}-replica{{- end }}
{{- define "myqueue.postgresql.name" -}}{{ include "myqueue.prefix" . }}-postgresql{{- end }}
{{- define "myqueue.postgresql.headless" -}}{{ include "myqueue.prefix" . }}-postgresql-hl{{- end }}
{{- define "myqueue.test.name" -}}{{ include "myqueue.prefix" . }}-test-produce-consume{{- end }}
{{- define "myqueue.uninstall.name" -}}{{ include "myqueue.prefix" . }}-uninstall{{- end }}

{{/* In-cluster URLs of the managers. */}}
{{- define "myqueue.primary.url" -}}
http://{{ include "myqueue.primary.name" . }}.{{ .Release.Namespace }}.svc:{{ .Values.manager.primary.service.port }}
{{- end }}
{{- define "myqueue.replica.url" -}}
http://{{ include "myqueue.replica.name" . }}.{{ .Release.Namespace }}.svc:{{ .Values.manager.replica.service.port }}
{{- end }}

{{- define "myqueue.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "myqueue.labels" -}}
helm.sh/chart: {{ include "myqueue.chart" .ctx }}
{{ include "myqueue.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: myqueue
{{- end }}

{{- define "myqueue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "myqueue.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference; call with (dict "ctx" $ "image" .Values.x.image). */}}
{{- define "myqueue.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/*
The Secret holding the DSN (key "dsn"): the bundled PostgreSQL's generated Secret, or the
user's existing one. Exactly one of the two must be chosen.
*/}}
{{- define "myqueue.dsnSecret" -}}
{{- if .Values.postgresql.bundled.enabled }}
{{- if .Values.postgresql.external.existingSecret }}
{{- fail "postgresql: set either bundled.enabled=true or external.existingSecret, not both" }}
{{- end }}
{{- include "myqueue.postgresql.name" . }}
{{- else if .Values.postgresql.external.existingSecret }}
{{- .Values.postgresql.external.existingSecret }}
{{- else }}
{{- fail "postgresql: set bundled.enabled=true (a try-out database) or external.existingSecret (a Secret with key \"dsn\")" }}
{{- end }}
{{- end }}

{{/* The only way the DSN reaches a container: env MYQUEUE_DSN from the Secret's key "dsn". */}}
{{- define "myqueue.dsnEnv" -}}
- name: MYQUEUE_DSN
  valueFrom:
    secretKeyRef:
      name: {{ include "myqueue.dsnSecret" . }}
      key: dsn
{{- end }}

{{/* Restricted Pod Security Standard: pod level. Call with the uid. */}}
{{- define "myqueue.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Restricted Pod Security Standard: container level. */}}
{{- define "myqueue.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The writable /tmp of a read-only root filesystem. */}}
{{- define "myqueue.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
{{- define "myqueue.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
The Secret holding the API token (key "token") when auth.enabled: the user's existing one, or
the chart's generated `<prefix>-auth` (templates/auth-secret.yaml).
*/}}
{{- define "myqueue.auth.name" -}}{{ include "myqueue.prefix" . }}-auth{{- end }}
{{- define "myqueue.authSecret" -}}
{{- default (include "myqueue.auth.name" .) .Values.auth.existingSecret }}
{{- end }}

{{/* The only way the token reaches a container: env MYQUEUE_TOKEN from the Secret's key "token". */}}
{{- define "myqueue.tokenEnv" -}}
{{- if .Values.auth.enabled }}
- name: MYQUEUE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "myqueue.authSecret" . }}
      key: token
{{- end }}
{{- end }}
