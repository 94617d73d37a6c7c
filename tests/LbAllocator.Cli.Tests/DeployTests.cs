using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.TestApiServer;

namespace LbAllocator.Cli.Tests;

/// <summary>
/// `kubectl kustomize deploy/` renders without a cluster, and what it renders is what an operator of a
/// real cluster needs: one namespace, our CRDs, locked-down pods whose args the binary accepts.
/// </summary>
public class DeployTests
{
    private const string Ns = "lballocator-system";
    private static readonly IReadOnlyList<object> Objects = InstallManifests.Objects;

    internal static readonly Dictionary<string, Type> OurKinds = new(StringComparer.Ordinal)
    {
        [$"{Api.GroupVersion}/IPAddressPool"] = typeof(V1Alpha1IPAddressPool),
        [$"{Api.GroupVersion}/L2Advertisement"] = typeof(V1Alpha1L2Advertisement),
    };

    private static V1Deployment Controller => Objects.OfType<V1Deployment>().Single();

    private static V1DaemonSet Speaker => Objects.OfType<V1DaemonSet>().Single();

    [Fact]
    public void Renders_the_namespace_crds_accounts_rbac_and_workloads()
    {
        var kinds = Objects.Select(o => ((IKubernetesObject)o).Kind).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(
            ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "CustomResourceDefinition", "CustomResourceDefinition", "CustomResourceDefinition",
             "DaemonSet", "Deployment", "Namespace", "PodDisruptionBudget", "Role", "Role", "RoleBinding", "RoleBinding", "ServiceAccount", "ServiceAccount"],
            kinds);
        Assert.Equal(Ns, Objects.OfType<V1Namespace>().Single().Metadata.Name);
        Assert.All(Objects.OfType<IMetadata<V1ObjectMeta>>().Where(o => o is not V1Namespace and not V1CustomResourceDefinition and not V1ClusterRole and not V1ClusterRoleBinding),
            o => Assert.Equal(Ns, o.Metadata.NamespaceProperty));
        // The very CRDs in config/crd, not copies.
        var crds = Objects.OfType<V1CustomResourceDefinition>().Select(c => c.Metadata.Name).Order(StringComparer.Ordinal);
        var files = Directory.GetFiles(Path.Combine(InstallManifests.RepoRoot, "config", "crd"), "lballocator.io_*.yaml")
            .Select(f => KubernetesYaml.Deserialize<V1CustomResourceDefinition>(File.ReadAllText(f)).Metadata.Name).Order(StringComparer.Ordinal);
        Assert.Equal(files, crds);
    }

    [Fact]
    public void The_controller_runs_two_locked_down_replicas_with_probes_and_requests()
    {
        var deployment = Controller;
        Assert.Equal(2, deployment.Spec.Replicas);
        var pod = deployment.Spec.Template.Spec;
        Assert.Equal("lballocator-controller", pod.ServiceAccountName);
        Assert.True(pod.SecurityContext.RunAsNonRoot);
        Assert.NotEqual(0, pod.SecurityContext.RunAsUser);
        Assert.NotEqual(true, pod.HostNetwork);
        var container = pod.Containers.Single();
        Assert.Equal("ghcr.io/lballocator/lballocator:0.1.0", container.Image);
        Assert.True(container.SecurityContext.ReadOnlyRootFilesystem);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        Assert.Null(container.SecurityContext.Capabilities.Add);
        Assert.Equal("/healthz", container.LivenessProbe.HttpGet.Path);
        Assert.Equal("/readyz", container.ReadinessProbe.HttpGet.Path);
        Assert.Equal(StatusPort(container), PortOf(container, container.LivenessProbe.HttpGet.Port));
        Assert.Equal(StatusPort(container), PortOf(container, container.ReadinessProbe.HttpGet.Port));
        Assert.True(container.Resources.Requests.ContainsKey("cpu") && container.Resources.Requests.ContainsKey("memory"));
        Assert.Equal("controller", container.Args[0]);
        AssertArgsAccepted(container.Args);
    }

    [Fact]
    public void The_speaker_runs_on_every_node_on_the_host_network_with_only_net_raw()
    {
        var pod = Speaker.Spec.Template.Spec;
        Assert.Equal("lballocator-speaker", pod.ServiceAccountName);
        Assert.True(pod.HostNetwork);
        Assert.Equal("ClusterFirstWithHostNet", pod.DnsPolicy);
        Assert.InRange(pod.TerminationGracePeriodSeconds ?? 30, 1, 15);
        Assert.Contains(pod.Tolerations, t => t.Key == "node-role.kubernetes.io/control-plane" && t.OperatorProperty == "Exists" && t.Effect == "NoSchedule");
        var container = pod.Containers.Single();
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        Assert.Equal(["NET_RAW"], container.SecurityContext.Capabilities.Add);
        Assert.Equal(0, container.SecurityContext.RunAsUser); // the image's default user is not root
        Assert.NotEqual(true, container.SecurityContext.Privileged);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation);
        Assert.True(container.SecurityContext.ReadOnlyRootFilesystem);
        Assert.Equal("spec.nodeName", container.Env.Single(e => e.Name == "NODE_NAME").ValueFrom.FieldRef.FieldPath);
        foreach (var probe in new[] { container.LivenessProbe, container.ReadinessProbe })
        {
            Assert.Equal("127.0.0.1", probe.HttpGet.Host);
            Assert.Equal(StatusPort(container), PortOf(container, probe.HttpGet.Port));
        }

        Assert.Equal(["/healthz", "/readyz"], [container.LivenessProbe.HttpGet.Path, container.ReadinessProbe.HttpGet.Path]);
        Assert.True(container.Resources.Requests.ContainsKey("memory"));
        Assert.Equal("speaker", container.Args[0]);
        AssertArgsAccepted(container.Args);
    }

    /// <summary>
    /// Issue 14: the requests are the measured footprint (bench/RESULTS.md) and the limits about twice it, so a leak
    /// restarts the pod before it presses the node; the binary carries the runtime settings the figures were measured with.
    /// </summary>
    [Fact]
    public void Memory_is_limited_to_about_twice_the_request_and_the_binary_carries_the_measured_gc_settings()
    {
        foreach (var container in new[] { Controller.Spec.Template.Spec, Speaker.Spec.Template.Spec }.Select(p => p.Containers.Single()))
        {
            var ratio = container.Resources.Limits["memory"].ToDecimal() / container.Resources.Requests["memory"].ToDecimal();
            Assert.InRange(ratio, 1.5m, 2.5m);
        }

        using var runtimeConfig = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "lballocator.runtimeconfig.json")));
        var settings = runtimeConfig.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.Equal(1024 * 1024, settings.GetProperty("System.GC.Gen0MaxBudget").GetInt32());
        Assert.False(settings.GetProperty("System.GC.Concurrent").GetBoolean());
        Assert.Equal(0, settings.GetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit").GetInt32());
    }

    [Fact]
    public void Rbac_grants_no_wildcards_no_service_writes_to_the_speaker_and_no_secret_but_the_speakers_key()
    {
        var controller = Grants.For(Objects, Ns, "lballocator-controller");
        var speaker = Grants.For(Objects, Ns, "lballocator-speaker");
        foreach (var rule in controller.AllRules.Concat(speaker.AllRules))
        {
            Assert.DoesNotContain("*", rule.Verbs);
            Assert.DoesNotContain("*", rule.Resources);
            Assert.DoesNotContain("*", rule.ApiGroups);
        }

        // Reading: the one Secret, by name. Creating (the controller, when it is missing): a name cannot be required.
        var secretRules = speaker.AllRules.Select(r => ("speaker", r)).Concat(controller.AllRules.Select(r => ("controller", r)))
            .Where(x => x.r.Resources.Contains("secrets"))
            .Select(x => $"{x.Item1} {string.Join(",", x.r.Verbs)} {string.Join(",", x.r.ResourceNames ?? [])}")
            .Order(StringComparer.Ordinal);
        Assert.Equal(["controller create ", "controller get lballocator-speaker-key", "speaker get lballocator-speaker-key"], secretRules);

        foreach (var verb in new[] { "create", "update", "patch", "delete" })
        {
            Assert.False(speaker.Allows(new ApiCall("", "services", verb, "default")), $"speaker may {verb} services");
            Assert.False(speaker.Allows(new ApiCall("", "services/status", verb, "default")), $"speaker may {verb} services/status");
        }

        Assert.True(controller.Allows(new ApiCall("", "services/status", "update", "default")));
    }

    [Fact]
    public void The_samples_go_into_namespaces_the_install_or_the_samples_create_and_use_installed_kinds()
    {
        var samples = Directory.GetFiles(Path.Combine(InstallManifests.RepoRoot, "config", "samples"), "*.yaml")
            .SelectMany(f => KubernetesYaml.LoadAllFromString(File.ReadAllText(f), OurKinds))
            .Cast<IKubernetesObject<V1ObjectMeta>>().ToList();
        var namespaces = samples.OfType<V1Namespace>().Select(n => n.Metadata.Name).Append(Ns).Append("default").ToHashSet(StringComparer.Ordinal);
        var served = Objects.OfType<V1CustomResourceDefinition>()
            .SelectMany(c => c.Spec.Versions.Where(v => v.Served).Select(v => $"{c.Spec.Group}/{v.Name}/{c.Spec.Names.Kind}"))
            .ToHashSet(StringComparer.Ordinal);
        Assert.NotEmpty(samples);
        foreach (var sample in samples)
        {
            if (sample.ApiVersion.Contains("lballocator.io", StringComparison.Ordinal))
            {
                Assert.Contains($"{sample.ApiVersion}/{sample.Kind}", served);
                Assert.Equal(Ns, sample.Metadata.NamespaceProperty);
            }
            else if (sample is not V1Namespace)
            {
                Assert.Contains(sample.Metadata.NamespaceProperty ?? "default", namespaces);
            }
        }
    }

    [Fact]
    public void The_image_is_built_by_the_script_ci_runs_and_defaults_to_a_non_root_user()
    {
        var dockerfile = File.ReadAllLines(Path.Combine(InstallManifests.RepoRoot, "Dockerfile"));
        var ci = File.ReadAllText(Path.Combine(InstallManifests.RepoRoot, ".ci", "run"));
        Assert.Contains("RUN scripts/build.sh /out", dockerfile);
        Assert.Contains("scripts/build.sh", ci, StringComparison.Ordinal);
        Assert.Equal(2, dockerfile.Count(l => l.StartsWith("FROM ", StringComparison.Ordinal)));
        var user = dockerfile.Last(l => l.StartsWith("USER ", StringComparison.Ordinal));
        Assert.NotEqual("0", user["USER ".Length..].Split(':')[0]);
        Assert.Contains(dockerfile, l => l.StartsWith("ENTRYPOINT", StringComparison.Ordinal) && l.Contains("/app/lballocator\"", StringComparison.Ordinal));
    }

    private static void AssertArgsAccepted(IList<string> args)
    {
        var parsed = CliApp.Root(TextWriter.Null, TextWriter.Null).Parse([.. args]);
        Assert.Empty(parsed.Errors.Select(e => e.Message));
    }

    private static int StatusPort(V1Container container)
    {
        var address = container.Args.Single(a => a.StartsWith("--status-address=", StringComparison.Ordinal));
        return System.Net.IPEndPoint.Parse(address["--status-address=".Length..]).Port;
    }

    private static int PortOf(V1Container container, IntOrString port) =>
        int.TryParse(port.Value, out var number) ? number : container.Ports.Single(p => p.Name == port.Value).ContainerPort;
}
