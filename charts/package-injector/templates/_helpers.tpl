{{/* Names */}}
{{- define "package-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "package-injector.fullname" -}}
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

{{- define "package-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "package-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "package-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "package-injector.labels" -}}
helm.sh/chart: {{ include "package-injector.chart" . }}
{{ include "package-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: package-injector
{{- end }}

{{- define "package-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "package-injector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "package-injector.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secret.name is required when tls.mode is secret" .Values.tls.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "package-injector.fullname" .) }}
{{- end }}
{{- end }}

{{/* An image reference from {registry, repository, tag, digest}; the registry defaults to imageRegistry
(where releases are published), the tag to appVersion. */}}
{{- define "package-injector.image" -}}
{{- $img := index . 0 }}
{{- $root := index . 1 }}
{{- $repo := $img.repository }}
{{- $registry := default $root.Values.imageRegistry $img.registry }}
{{- if $registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" $registry) $img.repository }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* Kubernetes version the templates target: kubeVersionOverride or the detected one. Chart.yaml's
    kubeVersion only checks the detected one, a guess under `helm template` and Argo CD: check both. */}}
{{- define "package-injector.kubeVersion" -}}
{{- $v := default .Capabilities.KubeVersion.Version .Values.kubeVersionOverride }}
{{- if not (semverCompare ">=1.34.0-0" $v) }}
{{- fail (printf "Kubernetes %s is not supported (1.34 or newer): upgrade the cluster, or set kubeVersionOverride to its real version" $v) }}
{{- end }}
{{- $v }}
{{- end }}

{{/* "true" when the MutatingWebhookConfiguration gets matchConditions (GA since 1.30): unless switched off. */}}
{{- define "package-injector.matchConditionsEnabled" -}}
{{- $_ := include "package-injector.kubeVersion" . }}
{{- if ne (toString .Values.webhook.matchConditions) "false" }}true{{ end }}
{{- end }}

{{/* The trigger annotation key, e.g. "package-url" or "example.com/package-url". */}}
{{- define "package-injector.triggerKey" -}}
{{- printf "%spackage-url" .Values.policy.annotationPrefix }}
{{- end }}

{{/* The webhook settings (webhook/settings.py field names), rendered into the ConfigMap. init_image is
not among them: the Deployment sets it as PACKAGE_INJECTOR_INIT_IMAGE, where kustomize's `images:` can
rewrite it (deploy/base/kustomizeconfig.yaml). */}}
{{- define "package-injector.settings" -}}
{{- $p := .Values.policy }}
{{- $init := .Values.initContainer }}
{{- $s := dict
  "annotation_prefix" $p.annotationPrefix
  "allowed_schemes" $p.allowedSchemes
  "allowed_hosts" $p.allowedHosts
  "plain_http_registries" $p.plainHttpRegistries
  "require_checksum" $p.requireChecksum
  "default_mount_path" $p.defaultMountPath
  "max_packages_per_pod" $p.maxPackagesPerPod
  "max_init_resources" $p.maxInitResources
  "init_image_pull_policy" $init.image.pullPolicy
  "init_resources" $init.resources
  "init_run_as_user" $init.securityContext.runAsUser
  "init_run_as_group" $init.securityContext.runAsGroup
  "init_env" $init.env
  "init_proxy_env" $init.proxyEnv
  "init_image_pull_secrets" $init.imagePullSecrets
  "port" .Values.containerPorts.https
  "metrics_port" .Values.containerPorts.metrics
  "log_level" .Values.logLevel
  "log_format" .Values.logFormat
  "shutdown_delay" .Values.shutdownDelaySeconds
  "shutdown_timeout" .Values.shutdownTimeoutSeconds
  "max_connections" .Values.limits.maxConnections
  "max_header_bytes" .Values.limits.maxHeaderBytes
  "max_body_bytes" .Values.limits.maxBodyBytes
  "tls_handshake_timeout" .Values.limits.tlsHandshakeTimeoutSeconds
  "request_read_timeout" .Values.limits.requestReadTimeoutSeconds
  "keep_alive_timeout" .Values.limits.keepAliveTimeoutSeconds
}}
{{- if $p.maxSizeLimit }}{{ $_ := set $s "max_size_limit" $p.maxSizeLimit }}{{ end }}
{{- if $p.defaultSizeLimit }}{{ $_ := set $s "default_size_limit" $p.defaultSizeLimit }}{{ end }}
{{- if $p.s3.region }}{{ $_ := set $s "s3_region" $p.s3.region }}{{ end }}
{{- if $p.s3.endpoint }}{{ $_ := set $s "s3_endpoint" $p.s3.endpoint }}{{ end }}
{{- if $p.s3.stsEndpoint }}{{ $_ := set $s "sts_endpoint" $p.s3.stsEndpoint }}{{ end }}
{{- toYaml $s }}
{{- end }}

{{/* Rules, selectors and client config shared by every webhook of the configuration. */}}
{{- define "package-injector.webhookCommon" -}}
{{- $root := index . 0 }}
{{- $caBundle := index . 1 }}
admissionReviewVersions: ["v1", "v1beta1"]
sideEffects: None
timeoutSeconds: {{ $root.Values.webhook.timeoutSeconds }}
matchPolicy: {{ $root.Values.webhook.matchPolicy }}
clientConfig:
  service:
    name: {{ include "package-injector.fullname" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: /mutate
    port: {{ $root.Values.service.port }}
  {{- if $caBundle }}
  caBundle: {{ $caBundle }}
  {{- end }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- $excluded := concat (list "kube-system" "kube-public" "kube-node-lease" $root.Release.Namespace) $root.Values.webhook.excludeNamespaces }}
        {{- range $excluded | uniq }}
        - {{ . | quote }}
        {{- end }}
    {{- if $root.Values.webhook.optIn }}
    - key: {{ $root.Values.webhook.namespaceLabel | quote }}
      operator: In
      values: ["enabled"]
    {{- else }}
    - key: {{ $root.Values.webhook.namespaceLabel | quote }}
      operator: NotIn
      values: ["disabled"]
    {{- end }}
    {{- with $root.Values.webhook.namespaceSelector.matchExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $root.Values.webhook.namespaceSelector.matchLabels }}
  matchLabels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
objectSelector:
  matchExpressions:
    - key: {{ $root.Values.webhook.namespaceLabel | quote }}
      operator: NotIn
      values: ["disabled"]
    {{- with $root.Values.webhook.objectSelector.matchExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $root.Values.webhook.objectSelector.matchLabels }}
  matchLabels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* A CEL test that `path` (an annotations map) holds the trigger key; `guard` checks the path exists. */}}
{{- define "package-injector.celHasTrigger" -}}
{{- $key := index . 0 }}
{{- $path := index . 1 }}
{{- $guards := index . 2 }}
{{- $tests := list }}
{{- range $guards }}{{ $tests = append $tests (printf "has(%s)" .) }}{{ end }}
{{- $tests = append $tests (printf "has(%s.annotations)" $path) }}
{{- /* The unnamed package's key, or a named package's (package-url.NAME). */}}
{{- $tests = append $tests (printf "('%s' in %s.annotations || %s.annotations.exists(k, k.startsWith('%s.')))" $key $path $path $key) }}
{{- printf "(%s)" (join " && " $tests) }}
{{- end }}
