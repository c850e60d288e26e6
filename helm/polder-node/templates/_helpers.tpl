{{/* Names and labels. */}}
{{- define "polder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "polder.fullname" -}}
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

{{- define "polder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "polder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "polder.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "polder.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: polder
{{- end }}

{{- define "polder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "polder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "polder.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/*
The node's configuration: .Values.config with the keys the chart owns set from the other
values (addresses, TLS files, policy, audit paths).
*/}}
{{- define "polder.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $node := default (dict) (get $config "node") }}
{{- $_ := set $node "flight_addr" (printf "0.0.0.0:%d" (int .Values.ports.flight)) }}
{{- $_ := set $node "http_addr" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- if .Values.tls.existingSecret }}
{{- $_ := set $node "tls_cert" "/etc/polder/tls/tls.crt" }}
{{- $_ := set $node "tls_key" "/etc/polder/tls/tls.key" }}
{{- end }}
{{- $_ := set $config "node" $node }}
{{- if .Values.accessPolicy.existingSecret }}
{{- $auth := default (dict) (get $config "auth") }}
{{- $_ := set $auth "policy" "/etc/polder/access/policy.toml" }}
{{- $_ := set $config "auth" $auth }}
{{- end }}
{{- if .Values.audit.enabled }}
{{- $audit := deepCopy .Values.audit.settings }}
{{- $_ := set $audit "log" "/var/lib/polder/audit/audit.jsonl" }}
{{- $_ := set $audit "signing_key" "/etc/polder/audit/audit-key.pem" }}
{{- $_ := set $config "audit" $audit }}
{{- end }}
{{- include "polder.toml.table" (list "" $config) }}
{{- end }}

{{/*
A TOML table from a map (Helm's toToml writes whole numbers as floats, 4096.0, which the
node's integer keys refuse): scalars and arrays of scalars first, then sub-tables and arrays
of tables. Keys are quoted; values are JSON scalars, which are valid TOML. Null values are
left out.
*/}}
{{- define "polder.toml.table" -}}
{{- $path := index . 0 }}
{{- $map := index . 1 }}
{{- range $key := keys $map | sortAlpha }}
{{- $value := get $map $key }}
{{- if not (kindIs "invalid" $value) }}
{{- $isTable := kindIs "map" $value }}
{{- $isTables := and (kindIs "slice" $value) (gt (len $value) 0) (kindIs "map" (first $value)) }}
{{- if not (or $isTable $isTables) }}
{{ toJson $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key := keys $map | sortAlpha }}
{{- $value := get $map $key }}
{{- $name := printf "%s%s" $path (toJson $key) }}
{{- if kindIs "map" $value }}

[{{ $name }}]
{{- include "polder.toml.table" (list (printf "%s." $name) $value) }}
{{- else if and (kindIs "slice" $value) (gt (len $value) 0) (kindIs "map" (first $value)) }}
{{- range $item := $value }}

[[{{ $name }}]]
{{- include "polder.toml.table" (list (printf "%s." $name) $item) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "polder.workload" -}}
{{- if .Values.audit.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}
