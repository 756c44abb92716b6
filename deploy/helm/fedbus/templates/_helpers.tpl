{{/* Chart name. */}}
{{- define "fedbus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every resource. */}}
{{- define "fedbus.fullname" -}}
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

{{- define "fedbus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "gateway"). */}}
{{- define "fedbus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fedbus.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Common labels; call with (dict "root" $ "component" "gateway"). */}}
{{- define "fedbus.labels" -}}
helm.sh/chart: {{ include "fedbus.chart" .root }}
{{ include "fedbus.selectorLabels" . }}
app.kubernetes.io/part-of: fedbus
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "fedbus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fedbus.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference; call with (dict "root" $ "image" .image "gpu" bool). */}}
{{- define "fedbus.image" -}}
{{- $root := .root }}
{{- $tag := .image.tag | default "" }}
{{- if not $tag }}
{{- $tag = $root.Values.image.tag | default $root.Chart.AppVersion }}
{{- if .gpu }}{{ $tag = printf "%s%s" $tag $root.Values.image.gpuTagSuffix }}{{ end }}
{{- end }}
{{- if $root.Values.image.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $root.Values.image.registry) .image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding FEDBUS_GATEWAY_API_KEYS. */}}
{{- define "fedbus.gatewayApiKeysSecret" -}}
{{- if .Values.gateway.apiKeys.create }}
{{- printf "%s-gateway-api-keys" (include "fedbus.fullname" .) }}
{{- else }}
{{- .Values.gateway.apiKeys.existingSecret }}
{{- end }}
{{- end }}

{{/*
Environment of every fedbus container: Kafka, MinIO, PostgreSQL, HTTP, logging, then the
global `env`/`extraEnv` and the component's own. Call with (dict "root" $ "c" <component values>
"extra" <dict of NAME: value the template adds>).
*/}}
{{- define "fedbus.env" -}}
{{- $v := .root.Values }}
{{- $vars := dict
  "FEDBUS_ENV" $v.fedbusEnv
  "FEDBUS_LOG_LEVEL" $v.logLevel
  "FEDBUS_HTTP_HOST" "0.0.0.0"
  "FEDBUS_HTTP_PORT" (toString $v.httpPort)
  "FEDBUS_KAFKA_BOOTSTRAP_SERVERS" $v.kafka.bootstrapServers
  "FEDBUS_KAFKA_SECURITY_PROTOCOL" $v.kafka.securityProtocol
  "FEDBUS_MINIO_ENDPOINT" $v.minio.endpoint
  "FEDBUS_MINIO_BUCKET" $v.minio.bucket
  "FEDBUS_MINIO_REGION" $v.minio.region }}
{{- if $v.kafka.sasl.mechanism }}{{ $_ := set $vars "FEDBUS_KAFKA_SASL_MECHANISM" $v.kafka.sasl.mechanism }}{{ end }}
{{- if $v.kafka.tls.caSecret }}{{ $_ := set $vars "FEDBUS_KAFKA_SSL_CAFILE" (printf "/etc/fedbus/kafka-ca/%s" $v.kafka.tls.caKey) }}{{ end }}
{{- if $v.kafka.tls.clientSecret }}
{{- $_ := set $vars "FEDBUS_KAFKA_SSL_CERTFILE" (printf "/etc/fedbus/kafka-client/%s" $v.kafka.tls.certKey) }}
{{- $_ := set $vars "FEDBUS_KAFKA_SSL_KEYFILE" (printf "/etc/fedbus/kafka-client/%s" $v.kafka.tls.keyKey) }}
{{- end }}
{{- if $v.minio.caSecret }}{{ $_ := set $vars "FEDBUS_MINIO_CA_FILE" (printf "/etc/fedbus/minio-ca/%s" $v.minio.caKey) }}{{ end }}
{{- if $v.minio.publicEndpoint }}{{ $_ := set $vars "FEDBUS_MINIO_PUBLIC_ENDPOINT" $v.minio.publicEndpoint }}{{ end }}
{{- if $v.otelExporterOtlpEndpoint }}{{ $_ := set $vars "FEDBUS_OTEL_EXPORTER_OTLP_ENDPOINT" $v.otelExporterOtlpEndpoint }}{{ end }}
{{- if $v.privacy.clientLifetimeEpsilon }}{{ $_ := set $vars "FEDBUS_CLIENT_LIFETIME_EPSILON" (toString $v.privacy.clientLifetimeEpsilon) }}{{ end }}
{{- $vars = merge (dict) (.c.env | default dict) (.extra | default dict) ($v.env | default dict) $vars }}
{{- range $name := keys $vars | sortAlpha }}
- name: {{ $name }}
  value: {{ get $vars $name | toString | quote }}
{{- end }}
{{- if $v.kafka.sasl.mechanism }}
- name: FEDBUS_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $v.kafka.sasl.existingSecret | quote }}, key: {{ $v.kafka.sasl.usernameKey | quote }}}
- name: FEDBUS_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $v.kafka.sasl.existingSecret | quote }}, key: {{ $v.kafka.sasl.passwordKey | quote }}}
{{- end }}
{{- if not .trainer }}
{{- /* A trainer holds no MinIO keys and no DSN: it gets presigned URLs from the aggregator. */}}
- name: FEDBUS_MINIO_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $v.minio.existingSecret | quote }}, key: {{ $v.minio.accessKeyKey | quote }}}
- name: FEDBUS_MINIO_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ $v.minio.existingSecret | quote }}, key: {{ $v.minio.secretKeyKey | quote }}}
- name: FEDBUS_POSTGRES_DSN
  valueFrom:
    secretKeyRef: {name: {{ $v.postgres.existingSecret | quote }}, key: {{ $v.postgres.dsnKey | quote }}}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* TLS volumes (CA / client certificates) shared by every pod. */}}
{{- define "fedbus.tlsVolumes" -}}
{{- $v := .Values }}
{{- if $v.kafka.tls.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ $v.kafka.tls.caSecret | quote }}}
{{- end }}
{{- if $v.kafka.tls.clientSecret }}
- name: kafka-client
  secret: {secretName: {{ $v.kafka.tls.clientSecret | quote }}, defaultMode: 0440}
{{- end }}
{{- if $v.minio.caSecret }}
- name: minio-ca
  secret: {secretName: {{ $v.minio.caSecret | quote }}}
{{- end }}
{{- end }}

{{- define "fedbus.tlsVolumeMounts" -}}
{{- $v := .Values }}
{{- if $v.kafka.tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/fedbus/kafka-ca, readOnly: true}
{{- end }}
{{- if $v.kafka.tls.clientSecret }}
- {name: kafka-client, mountPath: /etc/fedbus/kafka-client, readOnly: true}
{{- end }}
{{- if $v.minio.caSecret }}
- {name: minio-ca, mountPath: /etc/fedbus/minio-ca, readOnly: true}
{{- end }}
{{- end }}

{{/* Artifact keys (FEDBUS_ARTIFACT_KEYS_FILE): only for pods that read or write artifacts. */}}
{{- define "fedbus.artifactKeysEnv" -}}
{{- with .Values.artifactKeys }}
{{- if .existingSecret }}
- name: FEDBUS_ARTIFACT_KEYS_FILE
  value: /etc/fedbus/artifact-keys
{{- if .currentKeyId }}
- name: FEDBUS_ARTIFACT_KEY_ID
  value: {{ .currentKeyId | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fedbus.artifactKeysVolumes" -}}
{{- if .Values.artifactKeys.existingSecret }}
- name: artifact-keys
  secret: {secretName: {{ .Values.artifactKeys.existingSecret | quote }}, defaultMode: 0440}
{{- end }}
{{- end }}

{{- define "fedbus.artifactKeysVolumeMounts" -}}
{{- if .Values.artifactKeys.existingSecret }}
- {name: artifact-keys, mountPath: /etc/fedbus/artifact-keys, readOnly: true}
{{- end }}
{{- end }}

{{/*
Signed events (fedbus.bus.signing). "fedbus.signingCheck" fails the render when a pod would
start without what production needs: call with (dict "root" $ "secret" <Secret name> "what"
<the value that names it>). Outside development and test a missing Secret is an error; with a
Secret, signing.rootPublicKeys must be set.
*/}}
{{- define "fedbus.signingCheck" -}}
{{- $v := .root.Values }}
{{- if not .secret }}
{{- if not (has $v.fedbusEnv (list "development" "test")) }}
{{- fail (printf "%s is empty: with fedbusEnv %s every fedbus process refuses to start without its Ed25519 signing key (FEDBUS_SIGNING_KEY_FILE). Create the Secret (README.md, \"Signing keys\": python -m fedbus.bus.signing issue ...) and name it here, or use fedbusEnv development" .what $v.fedbusEnv) }}
{{- end }}
{{- else if and (eq $v.fedbusEnv "production") (not $v.signing.requireSignatures) }}
{{- fail "signing.requireSignatures is false: with fedbusEnv production every fedbus process refuses to start with FEDBUS_REQUIRE_SIGNATURES off" }}
{{- else if not $v.signing.rootPublicKeys }}
{{- fail (printf "signing.rootPublicKeys is empty: %s mounts a signing key, but no consumer could check a signature without the operator's root public keys (FEDBUS_ROOT_PUBLIC_KEYS; python -m fedbus.bus.signing root --key root.pem prints one)" .what) }}
{{- end }}
{{- end }}

{{/* The signing variables as YAML (a dict for "extra"): (dict "root" $ "secret" .. "file" ..). */}}
{{- define "fedbus.signingVars" -}}
{{- if .secret }}
FEDBUS_SIGNING_KEY_FILE: {{ .file | quote }}
FEDBUS_ROOT_PUBLIC_KEYS: {{ join "," .root.Values.signing.rootPublicKeys | quote }}
FEDBUS_REQUIRE_SIGNATURES: {{ ternary "true" "false" (.root.Values.signing.requireSignatures | default false) | quote }}
{{- end }}
{{- end }}

{{/* A service's own key: the entry <component>.pem of signing.existingSecret, mounted as
/etc/fedbus/signing/key.pem; call with (dict "root" $ "component" ..). */}}
{{- define "fedbus.signingVolumes" -}}
{{- with .root.Values.signing.existingSecret }}
- name: signing-key
  secret:
    secretName: {{ . | quote }}
    defaultMode: 0440
    items: [{key: {{ printf "%s.pem" $.component | quote }}, path: key.pem}]
{{- end }}
{{- end }}

{{- define "fedbus.signingVolumeMounts" -}}
{{- if .Values.signing.existingSecret }}
- {name: signing-key, mountPath: /etc/fedbus/signing, readOnly: true}
{{- end }}
{{- end }}

{{/* Writable scratch space for a read-only root filesystem. */}}
{{- define "fedbus.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
- name: cache
  emptyDir: {}
{{- end }}

{{- define "fedbus.scratchVolumeMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: cache, mountPath: /home/fedbus/.cache}
{{- end }}

{{/* Startup, liveness and readiness probes on the ops port. */}}
{{- define "fedbus.probes" -}}
{{- $p := .Values.probes }}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
{{- end }}

{{/* Pod annotations: Prometheus scrape hints plus the component's own. */}}
{{- define "fedbus.podAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .root.Values.httpPort | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .c.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Resources with nvidia.com/gpu added for GPU workloads; call with (dict "c" .. "gpu" bool). */}}
{{- define "fedbus.resources" -}}
{{- $res := deepCopy (.c.resources | default dict) }}
{{- if .gpu }}
{{- $count := .c.gpuCount | default 1 }}
{{- $limits := get $res "limits" | default dict }}
{{- $_ := set $limits "nvidia.com/gpu" $count }}
{{- $_ := set $res "limits" $limits }}
{{- $requests := get $res "requests" | default dict }}
{{- $_ := set $requests "nvidia.com/gpu" $count }}
{{- $_ := set $res "requests" $requests }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* Scheduling fields of a pod spec. */}}
{{- define "fedbus.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- end }}

{{/* A trainer pool dataset's --data PATH: `path` when given, else the pod's own client file
of the dataset folder `root` (default: mountPath, default /data/<name>), named as
fedbus.datalayout names it: <root>/clients/<client id>.parquet, the client id being the pod
name. tests/unit/test_helm_charts.py renders it and compares it with client_file(). */}}
{{- define "fedbus.clientDataPath" -}}
{{- if .path }}
{{- .path }}
{{- else }}
{{- $root := .root | default .mountPath | default (printf "/data/%s" .name) }}
{{- printf "%s/clients/$(POD_NAME).parquet" (trimSuffix "/" $root) }}
{{- end }}
{{- end }}
