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

{{/* The docker config Secret the controller and the worker use: the operator's for an external
registry, the chart's own for the built-in one. */}}
{{- define "ai-models.registryAuthSecret" -}}
{{- if .Values.registry.host -}}
{{ .Values.registry.authSecretName }}
{{- else -}}
ai-models-registry-auth
{{- end -}}
{{- end -}}

{{/* The built-in registry's configuration file: htpasswd authentication (bcrypt), deletes
enabled (the controller deletes a Model's artifact when the Model is deleted). */}}
{{- define "ai-models.registryConfig" -}}
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: ":5000"
auth:
  htpasswd:
    realm: ai-models-registry
    path: /etc/ai-models-registry/htpasswd
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
{{- end -}}

{{- define "ai-models.workerServiceAccount" -}}ai-models-worker{{- end -}}
{{- define "ai-models.controllerServiceAccount" -}}ai-models-controller{{- end -}}
