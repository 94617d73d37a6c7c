using k8s;
using k8s.Models;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace LbAllocator.Controller.Tests;

/// <summary>
/// The API one controller test runs against, and the controllers it started, all stopped and cleaned up at the end.
/// The API is the real kube-apiserver of a <see cref="RealCluster"/> (shared by the tests of a collection; each test
/// gets namespaces of its own) or, for the faults a real server cannot give on demand (500s, dropped watches,
/// 410 Gone), the in-process double.
/// </summary>
public sealed class ControllerFixture : IAsyncDisposable
{
    private readonly List<RunningController> _controllers = [];
    private readonly TestApiServer.TestApiServer? _double;
    private readonly KubeApiServer? _real;
    private readonly KubeConnection _connection;
    private readonly DirectoryInfo? _ownDirectory;

    private ControllerFixture(string kubeconfig, string ns, string serviceNs, TestApiServer.TestApiServer? fake, KubeApiServer? real, DirectoryInfo? ownDirectory)
    {
        Kubeconfig = kubeconfig;
        Ns = ns;
        ServiceNs = serviceNs;
        _double = fake;
        _real = real;
        _ownDirectory = ownDirectory;
        Client = new k8s.Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));
        _connection = KubeClientConfiguration.Load(kubeconfig); // the components' own reader, as the binary uses it
    }

    /// <summary>The controllers' namespace: pools, advertisements and the leader Lease.</summary>
    public string Ns { get; }

    /// <summary>Where the test's Services live.</summary>
    public string ServiceNs { get; }

    /// <summary>An admin kubeconfig file, for a controller run as its own process or host.</summary>
    public string Kubeconfig { get; }

    /// <summary>The test's own client (admin).</summary>
    public k8s.Kubernetes Client { get; }

    /// <summary>Every request the controllers started here made, seen from their side: countable on any server.</summary>
    public RequestLog ControllerRequests { get; } = new();

    /// <summary>The double, to inject faults; a test on the real server has none.</summary>
    public TestApiServer.TestApiServer Faults => _double ?? throw new InvalidOperationException("faults on demand need the double (StartDoubleAsync)");

    /// <summary>The real server, for kubectl; a test on the double has none.</summary>
    public KubeApiServer Real => _real ?? throw new InvalidOperationException("kubectl needs the real server (StartAsync(RealCluster))");

    /// <summary>A test on the real server: namespaces of its own for the controller and for its Services.</summary>
    public static async Task<ControllerFixture> StartAsync(RealCluster cluster)
    {
        var id = cluster.NextTestId();
        var fixture = new ControllerFixture(cluster.Server.AdminKubeconfig, $"{id}-system", id, null, cluster.Server, null);
        foreach (var ns in new[] { fixture.Ns, fixture.ServiceNs })
        {
            await fixture.Client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = ns } });
        }

        return fixture;
    }

    /// <summary>A test on a double of its own, for faults on demand.</summary>
    public static async Task<ControllerFixture> StartDoubleAsync()
    {
        var server = await TestApiServer.TestApiServer.StartAsync(bookmarkInterval: TimeSpan.FromMilliseconds(500));
        var dir = Directory.CreateTempSubdirectory("lbt-ctl");
        var kubeconfig = Path.Combine(dir.FullName, "kubeconfig");
        await File.WriteAllTextAsync(kubeconfig, TestApiServer.TestApiServer.Kubeconfig(server.Url.ToString()));
        var fixture = new ControllerFixture(kubeconfig, "lballocator-system", "default", server, null, dir);

        // The double starts empty, where a cluster has its namespaces: the controller serves a Service only once it knows its namespace.
        foreach (var ns in new[] { fixture.Ns, fixture.ServiceNs })
        {
            await fixture.Client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = ns } });
        }

        return fixture;
    }

    public sealed class RunningController(Reconciler reconciler, NodeDigestFeed nodeDigest, ControllerService service)
    {
        private bool _stopped;

        public Reconciler Reconciler { get; } = reconciler;

        public NodeDigestFeed NodeDigest { get; } = nodeDigest;

        /// <summary>Stops as SIGTERM would: the host cancels the service and waits for it.</summary>
        public async Task StopAsync()
        {
            if (_stopped)
            {
                return;
            }

            _stopped = true;
            await service.StopAsync(CancellationToken.None);
            service.Dispose();
        }
    }

    /// <summary>Starts a controller with its own client; with leader election on, several can run at once.</summary>
    public async Task<RunningController> StartControllerAsync(string identity = "test", bool leaderElection = false, bool acceptMetalLbAnnotations = false)
    {
        var options = new ControllerOptions
        {
            Namespace = Ns,
            Identity = identity,
            LeaderElection = leaderElection,
            AcceptMetalLbAnnotations = acceptMetalLbAnnotations,
            LeaseDuration = TimeSpan.FromSeconds(3),
            RenewDeadline = TimeSpan.FromSeconds(2),
            RetryPeriod = TimeSpan.FromMilliseconds(500),
        };
        var client = new KubeApi(_connection, ControllerRequests.NewHandler());
        var metrics = new ControllerMetrics(Prometheus.Metrics.WithCustomRegistry(Prometheus.Metrics.NewCustomRegistry()));
        var reconciler = new Reconciler(client, options, metrics, NullLoggerFactory.Instance);
        var nodeDigest = new NodeDigestFeed(client, options, reconciler, TimeProvider.System, NullLoggerFactory.Instance);
        var service = new ControllerService(
            client, reconciler, nodeDigest, metrics, new LbAllocator.Hosting.Health(TimeProvider.System), Options.Create(options), TimeProvider.System, NullLogger<ControllerService>.Instance);
        await service.StartAsync(CancellationToken.None);
        var running = new RunningController(reconciler, nodeDigest, service);
        _controllers.Add(running);
        return running;
    }

    /// <summary>Applies manifests into the controller's namespace with kubectl, as an operator would.</summary>
    public async Task ApplyAsync(string yaml)
    {
        var (code, output, error) = await Real.KubectlAsync(["apply", "-n", Ns, "-f", "-"], stdin: yaml);
        Assert.True(code == 0, $"kubectl apply exited {code}: {error}{output}");
    }

    public Task CreatePoolAsync(string name, params string[] addresses) =>
        Client.CustomObjects.CreateNamespacedCustomObjectAsync(
            new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = name }, Spec = new IPAddressPoolSpec { Addresses = addresses } },
            Api.Group, Api.Version, Ns, "ipaddresspools");

    public Task<V1Service> CreateServiceAsync(string name, Dictionary<string, string>? annotations = null) =>
        Client.CoreV1.CreateNamespacedServiceAsync(NewService(name, annotations), ServiceNs);

    /// <summary>An IPv4 single-stack Service of type LoadBalancer, as the tests create them.</summary>
    public static V1Service NewService(string name, Dictionary<string, string>? annotations = null) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Annotations = annotations },
        Spec = new V1ServiceSpec { Type = "LoadBalancer", Ports = [new V1ServicePort { Port = 80, Protocol = "TCP" }], IpFamilies = ["IPv4"], IpFamilyPolicy = "SingleStack" },
    };

    public async Task<IList<V1Service>> ServicesAsync() => (await Client.CoreV1.ListNamespacedServiceAsync(ServiceNs)).Items;

    /// <summary>Whether every Service of the test holds exactly one address.</summary>
    public async Task<bool> AllServedAsync() => (await ServicesAsync()).All(s => s.Status?.LoadBalancer?.Ingress?.Count == 1);

    public async Task<string?> IngressAsync(string name)
    {
        var svc = await Client.CoreV1.ReadNamespacedServiceAsync(name, ServiceNs);
        return svc.Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip;
    }

    /// <summary>Events on the named object in <paramref name="ns"/> (the Services' namespace unless given).</summary>
    public async Task<IReadOnlyList<Corev1Event>> EventsAsync(string name, string? ns = null) =>
        [.. (await Client.CoreV1.ListNamespacedEventAsync(ns ?? ServiceNs)).Items.Where(e => e.InvolvedObject.Name == name)];

    public Task<V1Alpha1IPAddressPool> PoolAsync(string name) =>
        Client.CustomObjects.GetNamespacedCustomObjectAsync<V1Alpha1IPAddressPool>(Api.Group, Api.Version, Ns, "ipaddresspools", name);

    /// <summary>Polls until the condition holds; fails with the description after the timeout.</summary>
    public static async Task Eventually(Func<Task<bool>> condition, string description, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (true)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (k8s.Autorest.HttpOperationException) when (DateTime.UtcNow < deadline)
            {
                // The server may be failing requests on purpose; try again.
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting until {description}");
            }

            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var controller in _controllers)
        {
            await controller.StopAsync();
        }

        if (_real is not null)
        {
            // Every controller watches Services in all namespaces: the next test's must not find these. (Deleting the
            // namespaces would not help: with no controller-manager, a namespace's contents are never removed.)
            foreach (var service in await ServicesAsync())
            {
                await Client.CoreV1.DeleteNamespacedServiceAsync(service.Metadata.Name, ServiceNs);
            }
        }

        Client.Dispose();
        if (_double is not null)
        {
            await _double.DisposeAsync();
        }

        _ownDirectory?.Delete(recursive: true);
    }
}
