{{/*
Shared definitions. Every define is prefixed `hygoshop.`.
*/}}

{{/* The chart's name: the prefix of every resource (hygoshop-<component>). */}}
{{- define "hygoshop.name" -}}
{{- .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a component's resources. Args: (dict "root" $ "name" "catalog"). */}}
{{- define "hygoshop.componentName" -}}
{{- printf "%s-%s" (include "hygoshop.name" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hygoshop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource of a component. Args: (dict "root" $ "name" "catalog"). */}}
{{- define "hygoshop.labels" -}}
helm.sh/chart: {{ include "hygoshop.chart" .root }}
{{ include "hygoshop.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: hygoshop
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "hygoshop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hygoshop.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/*
A component's settings: componentDefaults with the component's own keys laid over
them, maps merged one level deep (explicit, so `false` and `0` override too).
Args: (dict "root" $ "name" "catalog" "component" $c). Returns YAML; use fromYaml.
*/}}
{{- define "hygoshop.component" -}}
{{- $out := dict "name" .name -}}
{{- $component := .component | default dict -}}
{{- range $key, $default := .root.Values.componentDefaults -}}
{{- if hasKey $component $key -}}
{{- $own := get $component $key -}}
{{- if and (kindIs "map" $default) (kindIs "map" $own) -}}
{{- $merged := deepCopy $default -}}
{{- range $k, $v := $own }}{{ $_ := set $merged $k $v }}{{ end -}}
{{- $_ := set $out $key $merged -}}
{{- else -}}
{{- $_ := set $out $key $own -}}
{{- end -}}
{{- else -}}
{{- $_ := set $out $key (deepCopy $default) -}}
{{- end -}}
{{- end -}}
{{- range $key, $own := $component }}{{ if not (hasKey $out $key) }}{{ $_ := set $out $key $own }}{{ end }}{{ end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Image of a component. Args: (dict "root" $ "name" "catalog"). */}}
{{- define "hygoshop.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.repository .name .root.Values.image.tag -}}
{{- end -}}

{{/* The Python module of a component: hygoshop_<name>. */}}
{{- define "hygoshop.module" -}}
{{- printf "hygoshop_%s" (.name | replace "-" "_") -}}
{{- end -}}

{{/* Host of a dependency: its in-cluster Service, or the external host. Args: (dict "root" $ "dep" "postgresql"). */}}
{{- define "hygoshop.dependencyHost" -}}
{{- $values := get .root.Values .dep -}}
{{- if $values.inCluster.enabled -}}
{{- include "hygoshop.componentName" (dict "root" .root "name" .dep) -}}
{{- else -}}
{{- $values.host -}}
{{- end -}}
{{- end -}}

{{/* Whether a dependency is configured ("true" or ""). Args: (dict "root" $ "dep" "redis"). */}}
{{- define "hygoshop.dependencyEnabled" -}}
{{- $values := get .root.Values .dep -}}
{{- $external := ternary (get $values "endpoint") (get $values "host") (eq .dep "s3") -}}
{{- if or $values.inCluster.enabled $external -}}
true
{{- end -}}
{{- end -}}

{{/* The S3 endpoint URL. */}}
{{- define "hygoshop.s3Endpoint" -}}
{{- if .Values.s3.inCluster.enabled -}}
{{- printf "http://%s:8333" (include "hygoshop.componentName" (dict "root" . "name" "s3")) -}}
{{- else -}}
{{- .Values.s3.endpoint -}}
{{- end -}}
{{- end -}}

{{/* TCP port a dependency listens on. Args: (dict "root" $ "dep" "s3"). */}}
{{- define "hygoshop.dependencyPort" -}}
{{- if eq .dep "s3" -}}
{{- $url := urlParse (include "hygoshop.s3Endpoint" .root) -}}
{{- $hostPort := splitList ":" $url.host -}}
{{- if gt (len $hostPort) 1 }}{{ last $hostPort }}{{ else if eq $url.scheme "http" }}80{{ else }}443{{ end -}}
{{- else -}}
{{- (get .root.Values .dep).port -}}
{{- end -}}
{{- end -}}

{{/*
Environment for the dependencies a component uses. Passwords come from the Secret and
are spliced into URLs by Kubernetes' $(VAR) expansion, so they never appear in values
or manifests. Args: (dict "root" $ "c" $component "migrations" bool).
*/}}
{{- define "hygoshop.dependencyEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $secret := $v.secrets.existingSecret -}}
{{- $c := .c -}}
{{- if has "postgresql" $c.uses }}
{{- $pg := $v.postgresql }}
{{- $hostPort := printf "%s:%d" (include "hygoshop.dependencyHost" (dict "root" $root "dep" "postgresql")) (int $pg.port) }}
{{- $query := printf "sslmode=%s" (ternary "disable" $pg.sslMode $pg.inCluster.enabled) }}
- name: DATABASE_APP_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.secrets.keys.databaseAppPassword }}}
- name: DATABASE_URL
  value: {{ printf "postgresql://hygoshop_%s_app:$(DATABASE_APP_PASSWORD)@%s/%s?%s" ($c.name | replace "-" "_") $hostPort $pg.database $query | quote }}
{{- if .migrations }}
- name: MIGRATIONS_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.secrets.keys.databaseAdminPassword }}}
- name: MIGRATIONS_DATABASE_URL
  value: {{ printf "postgresql://%s:$(MIGRATIONS_DATABASE_PASSWORD)@%s/%s?%s" $pg.adminUser $hostPort $pg.database $query | quote }}
{{- end }}
{{- end }}
{{- if and (has "rabbitmq" $c.uses) (include "hygoshop.dependencyEnabled" (dict "root" $root "dep" "rabbitmq")) }}
{{- $mq := $v.rabbitmq }}
- name: RABBITMQ_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.secrets.keys.rabbitmqPassword }}}
- name: BUS_URL
  value: {{ printf "%s://%s:$(RABBITMQ_PASSWORD)@%s:%d/%s" (ternary "amqps" "amqp" $mq.tls) $mq.user (include "hygoshop.dependencyHost" (dict "root" $root "dep" "rabbitmq")) (int $mq.port) (urlquery $mq.vhost) | quote }}
{{- else if and (has "rabbitmq" $c.uses) (has "postgresql" $c.uses) }}
{{- /* No RabbitMQ configured: the bus runs over PostgreSQL (schema `bus`, role
hygoshop_bus_app with the application password; migrated by the migration Jobs). */}}
{{- $pg := $v.postgresql }}
{{- $hostPort := printf "%s:%d" (include "hygoshop.dependencyHost" (dict "root" $root "dep" "postgresql")) (int $pg.port) }}
{{- $query := printf "sslmode=%s" (ternary "disable" $pg.sslMode $pg.inCluster.enabled) }}
- name: BUS_URL
  value: {{ printf "postgresql://hygoshop_bus_app:$(DATABASE_APP_PASSWORD)@%s/%s?%s" $hostPort $pg.database $query | quote }}
{{- end }}
{{- if and (has "redis" $c.uses) (include "hygoshop.dependencyEnabled" (dict "root" $root "dep" "redis")) }}
{{- $redis := $v.redis }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.secrets.keys.redisPassword }}, optional: true}
- name: REDIS_URL
  value: {{ printf "%s://:$(REDIS_PASSWORD)@%s:%d/%d" (ternary "rediss" "redis" $redis.tls) (include "hygoshop.dependencyHost" (dict "root" $root "dep" "redis")) (int $redis.port) (int $redis.database) | quote }}
{{- end }}
{{- if and (has "s3" $c.uses) (include "hygoshop.dependencyEnabled" (dict "root" $root "dep" "s3")) }}
- name: S3_ENDPOINT_URL
  value: {{ include "hygoshop.s3Endpoint" $root | quote }}
- name: S3_BUCKET
  value: {{ $v.s3.bucket | quote }}
- name: S3_REGION
  value: {{ $v.s3.region | quote }}
{{- with $v.s3.publicEndpoint }}
- name: S3_PUBLIC_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.s3.corsOrigins }}
- name: S3_CORS_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
- name: S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.secrets.keys.s3AccessKeyId }}}
- name: S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.secrets.keys.s3SecretAccessKey }}}
{{- end }}
{{- end -}}

{{/*
A component's environment, the same for its pods and its migration Job (settings are
read and checked before any command runs): log level, dependencies, telemetry, the
addresses of the components it calls, its secretEnv and env.
Args: (dict "root" $ "c" $component "migrations" bool).
*/}}
{{- define "hygoshop.componentEnv" -}}
{{- $root := .root -}}
{{- $c := .c -}}
- {name: LOG_LEVEL, value: {{ $c.logLevel | quote }}}
{{- include "hygoshop.dependencyEnv" . }}
{{- include "hygoshop.telemetryEnv" $root }}
{{- range $callee := $c.calls }}
{{- $calleeRaw := get $root.Values.components $callee | required (printf "components.%s.calls names %q, which is not a component" $c.name $callee) }}
{{- $calleeC := include "hygoshop.component" (dict "root" $root "name" $callee "component" $calleeRaw) | fromYaml }}
- name: {{ printf "%s_GRPC_TARGET" ($callee | upper | replace "-" "_") }}
  value: {{ printf "%s:%d" (include "hygoshop.componentName" (dict "root" $root "name" $callee)) (int $calleeC.grpcPort) | quote }}
{{- end }}
{{- range $name, $key := $c.secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef: {name: {{ $root.Values.secrets.existingSecret }}, key: {{ $key }}}
{{- end }}
{{- range $name, $value := $c.env }}
- {name: {{ $name }}, value: {{ $value | toString | quote }}}
{{- end }}
{{- end -}}

{{/* OpenTelemetry environment (nothing when no endpoint is set). Args: root. */}}
{{- define "hygoshop.telemetryEnv" -}}
{{- if .Values.telemetry.otlpEndpoint }}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.telemetry.otlpEndpoint | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "service.namespace=hygoshop,k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)"
{{- end }}
{{- end -}}

{{/* The collector's host and port from telemetry.otlpEndpoint, as a list. */}}
{{- define "hygoshop.otlpHostPort" -}}
{{- $url := urlParse .Values.telemetry.otlpEndpoint -}}
{{- splitList ":" $url.host | toJson -}}
{{- end -}}

{{/* Pod security context shared by every pod of the chart. Args: uid. */}}
{{- define "hygoshop.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "hygoshop.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Egress rule to a port, to the given peers or (none given) to any address. Args: (dict "to" list "port" int "protocol" "TCP"). */}}
{{- define "hygoshop.egressRule" -}}
- ports:
  - {port: {{ .port }}, protocol: {{ .protocol | default "TCP" }}}
{{- if .to }}
  to:
    {{- toYaml .to | nindent 4 }}
{{- end }}
{{- end -}}

{{/* Egress every pod of the chart needs: cluster DNS. */}}
{{- define "hygoshop.dnsEgress" -}}
- ports:
  - {port: 53, protocol: UDP}
  - {port: 53, protocol: TCP}
{{- with .Values.networkPolicy.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{/* Egress to the OTLP collector, when one is configured. */}}
{{- define "hygoshop.telemetryEgress" -}}
{{- if .Values.telemetry.otlpEndpoint }}
{{- $hostPort := include "hygoshop.otlpHostPort" . | fromJsonArray }}
{{ include "hygoshop.egressRule" (dict "to" .Values.telemetry.egressTo "port" (last $hostPort | int)) }}
{{- end }}
{{- end -}}

{{/*
Egress of a component's pods (its server and its workers): DNS, telemetry, the
dependencies it uses and the components it calls. Args: (dict "root" $ "c" $component).
*/}}
{{- define "hygoshop.componentEgress" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- include "hygoshop.dnsEgress" $root }}
{{- include "hygoshop.telemetryEgress" $root }}
{{- range $dep := $c.uses }}
{{- if include "hygoshop.dependencyEnabled" (dict "root" $root "dep" $dep) }}
{{- $port := include "hygoshop.dependencyPort" (dict "root" $root "dep" $dep) | int }}
{{- $to := (get $root.Values $dep).egressTo }}
{{- if (get $root.Values $dep).inCluster.enabled }}
{{- $to = list (dict "podSelector" (dict "matchLabels" (include "hygoshop.selectorLabels" (dict "root" $root "name" $dep) | fromYaml))) }}
{{- if eq $dep "s3" }}{{ $port = 8333 }}{{ end }}
{{- end }}
{{ include "hygoshop.egressRule" (dict "to" $to "port" $port) }}
{{- end }}
{{- end }}
{{- range $callee := $c.calls }}
{{- $calleeRaw := get $root.Values.components $callee | required (printf "components.%s.calls names %q, which is not a component" $c.name $callee) }}
{{- $calleeC := include "hygoshop.component" (dict "root" $root "name" $callee "component" $calleeRaw) | fromYaml }}
- ports:
    - {port: {{ $calleeC.grpcPort }}, protocol: TCP}
  to:
    - podSelector:
        matchLabels:
          {{- include "hygoshop.selectorLabels" (dict "root" $root "name" $callee) | nindent 10 }}
{{- end }}
{{- end -}}

{{/* Pod scheduling keys shared by components and the gateway. Args: settings map. */}}
{{- define "hygoshop.scheduling" -}}
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
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
