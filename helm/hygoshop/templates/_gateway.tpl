{{/*
The gateway's Envoy config: the build-time file, with the collector's address spliced
in when telemetry.otlpEndpoint is set. Fails when values disagree with what the file was
rendered for (a public component added or a port changed without
`make helm-envoy-config`), instead of deploying a gateway that routes nowhere.
*/}}
{{- define "hygoshop.gatewayConfig" -}}
{{- $otlp := .Values.telemetry.otlpEndpoint -}}
{{- $file := ternary "files/envoy-otlp.yaml" "files/envoy.yaml" (ne $otlp "") -}}
{{- $config := .Files.Get $file -}}
{{- if not $config -}}
{{- fail (printf "%s is missing from the chart: run `make helm-envoy-config`" $file) -}}
{{- end -}}
{{- if $otlp -}}
{{- $hostPort := include "hygoshop.otlpHostPort" . | fromJsonArray -}}
{{- /* Must match OTLP_PLACEHOLDER in deploy/chart_files.py. */ -}}
{{- $placeholder := `socket_address: {address: "otlp-collector.invalid", port_value: 4317}` -}}
{{- if not (contains $placeholder $config) -}}
{{- fail (printf "%s has no collector placeholder: run `make helm-envoy-config`" $file) -}}
{{- end -}}
{{- $config = replace $placeholder (printf "socket_address: {address: %s, port_value: %d}" (first $hostPort | toJson) (last $hostPort | int)) $config -}}
{{- end -}}
{{- $parsed := fromYaml $config -}}
{{- $listener := first $parsed.static_resources.listeners -}}
{{- if ne (int $listener.address.socket_address.port_value) (int .Values.gateway.containerPort) -}}
{{- fail (printf "gateway.containerPort is %v but %s listens on %v: run `make helm-envoy-config`" .Values.gateway.containerPort $file $listener.address.socket_address.port_value) -}}
{{- end -}}
{{- $clusters := dict -}}
{{- range $parsed.static_resources.clusters -}}
{{- $address := (first (first .load_assignment.endpoints).lb_endpoints).endpoint.address.socket_address -}}
{{- $_ := set $clusters .name (printf "%s:%d" $address.address (int $address.port_value)) -}}
{{- end -}}
{{- $upstreams := list -}}
{{- range $name, $raw := .Values.components -}}
{{- $c := include "hygoshop.component" (dict "root" $ "name" $name "component" $raw) | fromYaml -}}
{{- if $c.public -}}
{{- $want := printf "%s:%d" (include "hygoshop.componentName" (dict "root" $ "name" $name)) (int $c.grpcPort) -}}
{{- $upstreams = append $upstreams $want -}}
{{- if ne $want (get $clusters $name) -}}
{{- fail (printf "the gateway config sends %s to %q but the values say %q: run `make helm-envoy-config`" $name (get $clusters $name) $want) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $target := $clusters -}}
{{- if and (not (has $name (list "authz" "otlp"))) (not (hasKey $.Values.components $name)) -}}
{{- fail (printf "the gateway config routes to %s, which is not in components: run `make helm-envoy-config`" $name) -}}
{{- end -}}
{{- end -}}
{{- if not (has (get $clusters "authz") $upstreams) -}}
{{- fail (printf "the gateway's auth check goes to %q, which is no public component's address" (get $clusters "authz")) -}}
{{- end -}}
{{- $config -}}
{{- end -}}
