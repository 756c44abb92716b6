{{- define "site.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> unless the release name holds the chart name. */}}
{{- define "site.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "site.selectorLabels" -}}
app.kubernetes.io/name: {{ include "site.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: trainer
{{- end }}

{{- define "site.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{ include "site.selectorLabels" . }}
app.kubernetes.io/part-of: fedbus
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
fedbus.io/client-id: {{ .Values.clientId | quote }}
{{- end }}

{{- define "site.image" -}}
{{- $tag := .Values.image.tag | default "" }}
{{- if not $tag }}
{{- $tag = .Chart.AppVersion }}
{{- if .Values.gpu.enabled }}{{ $tag = printf "%s%s" $tag .Values.image.gpuTagSuffix }}{{ end }}
{{- end }}
{{- if .Values.image.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" .Values.image.registry) .Values.image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The trainer's environment: who it is, its data, its policy, Kafka, TLS CAs, artifact keys,
its signing key and the root public keys.
No MinIO access or secret key and no PostgreSQL DSN: the trainer has none. */}}
{{- define "site.env" -}}
{{- $v := .Values }}
{{- $vars := dict
  "FEDBUS_ENV" $v.fedbusEnv
  "FEDBUS_LOG_LEVEL" $v.logLevel
  "FEDBUS_HTTP_HOST" "0.0.0.0"
  "FEDBUS_HTTP_PORT" (toString $v.httpPort)
  "FEDBUS_CLIENT_ID" $v.clientId
  "FEDBUS_DATA" (include "site.data" . | fromYamlArray | join ",")
  "FEDBUS_DEVICE" (ternary "cuda" $v.device $v.gpu.enabled)
  "FEDBUS_STATE_DIR" "/var/lib/fedbus/state"
  "FEDBUS_SITE_POLICY_FILE" "/etc/fedbus/site-policy/policy.yaml"
  "FEDBUS_KAFKA_BOOTSTRAP_SERVERS" $v.kafka.bootstrapServers
  "FEDBUS_KAFKA_SECURITY_PROTOCOL" $v.kafka.securityProtocol
  "FEDBUS_KAFKA_SASL_MECHANISM" $v.kafka.sasl.mechanism
  "FEDBUS_ARTIFACT_KEYS_FILE" "/etc/fedbus/artifact-keys"
  "FEDBUS_SIGNING_KEY_FILE" "/etc/fedbus/signing/key.pem"
  "FEDBUS_ROOT_PUBLIC_KEYS" (join "," $v.signing.rootPublicKeys)
  "FEDBUS_REQUIRE_SIGNATURES" "true" }}
{{- if $v.artifactKeys.currentKeyId }}{{ $_ := set $vars "FEDBUS_ARTIFACT_KEY_ID" $v.artifactKeys.currentKeyId }}{{ end }}
{{- if $v.kafka.tls.caSecret }}{{ $_ := set $vars "FEDBUS_KAFKA_SSL_CAFILE" (printf "/etc/fedbus/kafka-ca/%s" $v.kafka.tls.caKey) }}{{ end }}
{{- if $v.minio.caSecret }}{{ $_ := set $vars "FEDBUS_MINIO_CA_FILE" (printf "/etc/fedbus/minio-ca/%s" $v.minio.caKey) }}{{ end }}
{{- $vars = merge (dict) $vars ($v.env | default dict) }}
{{- range $name := keys $vars | sortAlpha }}
- name: {{ $name }}
  value: {{ get $vars $name | toString | quote }}
{{- end }}
- name: FEDBUS_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $v.kafka.sasl.existingSecret | quote }}, key: {{ $v.kafka.sasl.usernameKey | quote }}}
- name: FEDBUS_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $v.kafka.sasl.existingSecret | quote }}, key: {{ $v.kafka.sasl.passwordKey | quote }}}
{{- end }}

{{/* GPU: nvidia.com/gpu in limits and requests. */}}
{{- define "site.resources" -}}
{{- $res := deepCopy (.Values.resources | default dict) }}
{{- if .Values.gpu.enabled }}
{{- $limits := get $res "limits" | default dict }}
{{- $_ := set $limits "nvidia.com/gpu" .Values.gpu.count }}
{{- $_ := set $res "limits" $limits }}
{{- $requests := get $res "requests" | default dict }}
{{- $_ := set $requests "nvidia.com/gpu" .Values.gpu.count }}
{{- $_ := set $res "requests" $requests }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* The datasets as NAME=PATH: an entry NAME alone is the site's own client file of the
dataset folder <mountPath>/NAME, named as fedbus.datalayout names it,
clients/<clientId>.parquet; NAME=PATH is kept as written. */}}
{{- define "site.data" -}}
{{- $v := .Values }}
{{- range $v.data }}
{{- if contains "=" . }}
- {{ . | quote }}
{{- else }}
- {{ printf "%s=%s/%s/clients/%s.parquet" . (trimSuffix "/" $v.dataVolume.mountPath) . $v.clientId | quote }}
{{- end }}
{{- end }}
{{- end }}
