{{/* Common labels of every object of the chart. */}}
{{- define "ai-models.labels" -}}
app.kubernetes.io/part-of: ai-models
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The registry the artifacts go to: the external one, or the in-cluster Service. */}}
{{- define "ai-models.registryHost" -}}
{{- if .Values.registry.host -}}
{{ .Values.registry.host }}
{{- else -}}
ai-models-registry.{{ .Release.Namespace }}.svc:5000
{{- end -}}
{{- end -}}

{{- define "ai-models.registryInsecure" -}}
{{- if .Values.registry.host -}}{{ .Values.registry.insecure }}{{- else -}}true{{- end -}}
{{- end -}}

{{- define "ai-models.workerServiceAccount" -}}ai-models-worker{{- end -}}
{{- define "ai-models.controllerServiceAccount" -}}ai-models-controller{{- end -}}
