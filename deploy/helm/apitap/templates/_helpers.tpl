{{/* Chart name, or nameOverride. */}}
{{- define "apitap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: fullnameOverride, the release name if it contains the chart name,
otherwise "<release>-<chart>". Component names append "-sensor" / "-analyzer". */}}
{{- define "apitap.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "apitap.sensor.fullname" -}}
{{- printf "%s-sensor" (include "apitap.fullname" .) -}}
{{- end -}}

{{- define "apitap.analyzer.fullname" -}}
{{- printf "%s-analyzer" (include "apitap.fullname" .) -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "apitap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: apitap
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "sensor"). */}}
{{- define "apitap.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-%s" (include "apitap.name" .root) .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* All labels of one component's objects. */}}
{{- define "apitap.componentLabels" -}}
{{ include "apitap.labels" .root }}
{{ include "apitap.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image reference of one component: (dict "root" $ "image" .Values.sensor.image). */}}
{{- define "apitap.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The sensor's configuration: sensor.config, or the chart's copy of the example. */}}
{{- define "apitap.sensor.config" -}}
{{- if .Values.sensor.config -}}
{{- .Values.sensor.config -}}
{{- else if .Values.sensor.tls.enabled -}}
{{- regexReplaceAll "(\\[tls\\][^\\[]*?\\n)enabled = false" (.Files.Get "files/sensor.toml") "${1}enabled = true" -}}
{{- else -}}
{{- .Files.Get "files/sensor.toml" -}}
{{- end -}}
{{- end -}}

{{/* Whether the sensor's configuration turns TLS capture on ([tls] ... enabled = true). */}}
{{- define "apitap.sensor.configTls" -}}
{{- if regexMatch "(?m)^\\s*\\[tls\\][^\\[]*?\\n\\s*enabled\\s*=\\s*true" (include "apitap.sensor.config" .) -}}
true
{{- end -}}
{{- end -}}

{{- define "apitap.analyzer.config" -}}
{{- if .Values.analyzer.config -}}
{{- .Values.analyzer.config -}}
{{- else -}}
{{- .Files.Get "files/analyzer.toml" -}}
{{- end -}}
{{- end -}}

{{- define "apitap.sensor.secretName" -}}
{{- default (printf "%s-secrets" (include "apitap.sensor.fullname" .)) .Values.sensor.secretName -}}
{{- end -}}

{{- define "apitap.analyzer.secretName" -}}
{{- default (printf "%s-secrets" (include "apitap.analyzer.fullname" .)) .Values.analyzer.secretName -}}
{{- end -}}
